"""The torch side: models, data, training loop, MAE, distillation, synthesis, export."""
