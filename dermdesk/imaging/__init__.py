"""Pure pixel code: safe decode, EXIF/device, quality, skin tone, dedup, camera. No Qt, no torch."""
