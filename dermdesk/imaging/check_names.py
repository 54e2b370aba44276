"""The quality checks' names in display order, with their titles (no OpenCV: the CLI's
filters and the GUI read them without loading the checker)."""

from __future__ import annotations

# Display order and titles (the GUI shows these; the library stores the keys).
CHECK_TITLES: dict[str, str] = {
    "readable": "Readable",
    "sharpness": "Sharpness",
    "lesion_sharpness": "Lesion sharpness",
    "motion_blur": "Motion blur",
    "exposure": "Exposure",
    "clipping": "Clipped highlights / shadows",
    "contrast": "Contrast",
    "glare": "Glare",
    "colour_cast": "Colour cast",
    "noise": "Noise",
    "compression": "JPEG compression",
    "blockiness": "Block artefacts",
    "resolution": "Resolution",
    "lesion_size": "Lesion size in frame",
    "lesion_cut": "Lesion cut by border",
    "lesion_centre": "Lesion centred",
    "modality": "Modality",
    "hair": "Hair",
    "ink": "Ink / marker",
    "ruler": "Ruler",
    "bubbles": "Gel bubbles",
    "skin_tone": "Skin tone estimate",
    "duplicate": "Duplicate",
}
