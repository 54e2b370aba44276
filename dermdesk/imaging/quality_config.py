"""Every threshold of the quality checks and the skin-tone estimator, in one place.

Limits were calibrated on the real images in ../shared/data with
``scripts/eval_quality.py`` (false fails on untouched images, detection of
degraded copies). Bump ``CHECKER_VERSION`` whenever a limit or a method
changes: stored findings of another version are re-run by ``dermdesk check``.
"""

from __future__ import annotations

from dermdesk.imaging.findings import Limits

# 1.2: the modality detector of issue 14 (hand + CNN, calibrated unsure)
# 1.3: a clinical photo's resolution is judged on its lesion's pixel span (issue 19)
CHECKER_VERSION = "1.3"
DECODE_SIZE = 512  # JPEGs are DCT-decoded to the smallest scale with both sides >= this
SHARP_SIZE = 512  # longest side of the grey image the focus measures read
WORK_SIZE = 256  # longest side of the colour image for everything else
MIN_CHECK_SIDE = 16  # below this many pixels a side, pixel checks cannot measure anything

# -- field of view, letterbox, segmentation -------------------------------------------------
FOV_DARK_MIN = 25  # a corner darker than this grey level is dermoscope vignette ...
FOV_DARK_FRACTION = 0.45  # ... or darker than this fraction of the image's 90th percentile
PAD_RANGE = 6  # a border row/column whose grey levels span at most this ...
PAD_DARK, PAD_BRIGHT = 40, 230  # ... and that is this dark or bright is padding
HAIR_KERNEL = 7  # black-hat structuring element (px at WORK_SIZE): wider than a hair
HAIR_CONTRAST = 14  # black-hat response (grey levels) that counts as a hair pixel
SKIN_RING_FRACTION = 0.12  # width of the outer ring the skin colour is read from
SKIN_RING_LIGHT_PERCENTILE = 60  # skin = ring pixels lighter than this percentile
LESION_BRIGHTER_WEIGHT = 0.3  # brighter-than-skin (glare, scale) counts less than darker
LESION_MIN_DELTA_E = 6.0  # colour difference below which nothing is a lesion
LESION_MIN_AREA = 0.002  # smallest lesion as a fraction of the field of view

# -- measures ---------------------------------------------------------------------------------
FOCUS_EPS = 0.5  # grey levels added to the middle band (keeps flat images finite)
FOCUS_MIN_DETAIL = 0.15  # middle-band contrast below this: nothing to focus on
EXPOSURE_HIGHLIGHT_PERCENTILE = 99.5  # of max(R, G, B): where the highlights are read
EXPOSURE_HIGHLIGHT_TARGET = 0.9  # linear level the highlights normally reach
EXPOSURE_MIDTONE_TARGET = 0.25  # linear luminance of normal mid-tones
OVEREXPOSURE_CLIP_WEIGHT = 0.5  # weight of ln(1 + % burnt-out pixels) in the overexposure index
CLIP_HIGH = 254  # a channel at or above this is clipped
CLIP_LOW = 3  # all channels at or below this is crushed black
GLARE_MIN_LEVEL = 230  # specular highlight: every channel at least this ...
GLARE_MAX_CHROMA = 25  # ... and channels within this of each other
GLARE_MAX_BLOB = 0.02  # a white patch larger than this share of the image is background
NOISE_FLAT_PERCENTILE = 50  # pixels with gradients below this percentile are 'flat'
NOISE_CROP = 512  # noise and blockiness read a central crop of the decoded image
BLOCK_CROP = 512
BLOCK_EPS = 0.5

# Colour of normal photos per modality: mean and inverse covariance of the colour vector
# (log R/G, log B/G of the median pixel and of the brightest 3 %, linear light; see
# checks.cast_vector), fitted by scripts/fit_priors.py on the training-scale sets in
# shared/data (dermoscopic: ham10000_224, isic2017, ph2; clinical: fitzpatrick17k_more).
# The reference images used for evaluation are not in it.
CAST_PRIOR: dict[str, tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]] = {
    "clinical": (
        (0.6602, -0.2855, 0.4085, -0.156),
        (
            (15.747, 7.721, -13.81, -9.281),
            (7.721, 27.322, -10.084, -27.23),
            (-13.81, -10.084, 24.32, 16.363),
            (-9.281, -27.23, 16.363, 45.962),
        ),
    ),
    "dermoscopic": (
        (0.5654, -0.0432, 0.4129, 0.0104),
        (
            (22.867, 10.493, -15.987, -11.541),
            (10.493, 44.792, -9.413, -34.389),
            (-15.987, -9.413, 20.251, 10.932),
            (-11.541, -34.389, 10.932, 41.582),
        ),
    ),
}

# -- verdict limits ---------------------------------------------------------------------------
# warn / fail bounds of each score; calibrated on real images by scripts/eval_quality.py
# (false fails on untouched images <= 5 %, visible degradations caught).
LIMITS: dict[str, Limits] = {
    "sharpness": Limits(warn=32, fail=27),  # fine/mid band contrast x100
    "lesion_sharpness": Limits(warn=30, fail=25),
    "motion_blur": Limits(warn=20, fail=12),  # directional balance x100
    "underexposure": Limits(warn=-1.2, fail=-1.6),  # EV of the highlights
    # highlights EV + OVEREXPOSURE_CLIP_WEIGHT * ln(1 + % burnt-out pixels)
    "overexposure": Limits(warn=0.9, fail=1.7, higher_is_better=False),
    "clipping": Limits(warn=8, fail=25, higher_is_better=False),  # % of pixels
    "contrast": Limits(warn=14, fail=10),  # L* range
    "glare": Limits(warn=3, fail=10, higher_is_better=False),  # % of pixels
    "colour_cast": Limits(warn=3.5, fail=4.5, higher_is_better=False),  # Mahalanobis
    "noise": Limits(warn=6.0, fail=11.0, higher_is_better=False),  # sigma, grey levels
    "compression": Limits(warn=50, fail=30),  # JPEG quality
    "blockiness": Limits(warn=1.5, fail=2.0, higher_is_better=False),
    "lesion_size": Limits(warn=1.0, fail=-1.0),  # % of frame; never fails
    "lesion_cut": Limits(warn=40, fail=101, higher_is_better=False),  # % of outline
    "lesion_centre": Limits(warn=50, fail=101, higher_is_better=False),  # % to a corner
    # artefacts only ever warn
    "hair": Limits(warn=8, fail=1e9, higher_is_better=False),  # % of image
    "ink": Limits(warn=0.3, fail=1e9, higher_is_better=False),  # % of the skin
    "ruler": Limits(warn=7, fail=1e9, higher_is_better=False),  # evenly spaced ticks
    "bubbles": Limits(warn=1, fail=1e9, higher_is_better=False),  # bubbles seen
}
# Short side in pixels, per modality. A clinical photo warns on its lesion's span, not its
# frame; its ``warn`` decides only when no lesion is found (a rash, nothing in view).
RESOLUTION_LIMITS: dict[str, Limits] = {
    "dermoscopic": Limits(warn=450, fail=150),  # HAM10000's 600x450 is the field's reference
    "clinical": Limits(warn=300, fail=150),
    "other": Limits(warn=300, fail=100),
}
# Pixels across a clinical photo's lesion (equivalent diameter) below which its border and
# colours are too coarse to judge: 1-2 % of the reference images (PAD-UFES-20, Fitzpatrick17k),
# where the 600 px frame rule warned on 88 % of the clinical photos (652 of 740).
LESION_SPAN_WARN = 64

# -- modality ---------------------------------------------------------------------------------
MODALITY_SURE = 0.8  # a guess this confident overrides "unknown" and flags a mismatch
LBP_MARGIN = 2  # grey levels a neighbour must exceed the centre by to set its LBP bit

# -- artefacts --------------------------------------------------------------------------------
HAIR_MIN_LENGTH = 12  # px at WORK_SIZE: shorter dark pieces are pores or dots, not hair
HAIR_MAX_WIDTH = 3.0  # px: mean width (area / length) of a hair
INK_HUE_MIN, INK_HUE_MAX = 240.0, 350.0  # CIELAB hue angle of violet / blue marker ink
INK_MIN_BLUE_SHIFT = 10.0  # b* at least this far below the skin's
INK_MIN_DARKER = 3.0  # L* at least this far below the skin's
INK_MIN_CHROMA = 8.0
INK_MIN_BLOB = 4  # px: smaller specks are noise
RULER_CONTRAST = 12  # black-hat response of a tick mark (grey levels)
RULER_MAX_COMPONENTS = 4000
RULER_TICK_AREA = (3, 120)  # px at SHARP_SIZE
RULER_TICK_LENGTH = (4.0, 40.0)
RULER_TICK_ELONGATION = 2.0
RULER_BASELINE_TOL = 4.0  # px a tick may sit off the ruler's line
RULER_ANGLE_TOL = 8.0  # degrees: ticks of one ruler are parallel
RULER_MIN_TICKS = 5
RULER_LINE_LENGTH = 21  # px: straight runs this long are lines, not ticks
RULER_MIN_SPACING = 3.0
RULER_SPACING_TOL = 0.15
BUBBLE_MIN_DIST = 8
BUBBLE_CANNY = 60
BUBBLE_VOTES = 14
BUBBLE_RADIUS = (3, 22)  # px at SHARP_SIZE
BUBBLE_MAX_CANDIDATES = 200
BUBBLE_EDGE = 40.0  # Sobel magnitude on the outline
BUBBLE_COMPLETE = 0.75  # share of the outline that must be edge ...
BUBBLE_RADIAL = 0.85  # ... pointing across the outline (|cos| to the radius), not along it
BUBBLE_CLEAR = 10.0  # grey levels: inside and outside of a bubble look alike

# -- skin tone --------------------------------------------------------------------------------
SKIN_L_RANGE = (8.0, 97.0)  # L* of anything that could be skin
SKIN_HUE_RANGE = (0.0, 95.0)  # CIELAB hue angle (degrees) of skin of every tone
SKIN_MIN_CHROMA = 4.0
TONE_RING_GAP = 0.15  # ring starts this many lesion diameters outside the lesion ...
TONE_RING_WIDTH = 0.6  # ... and ends this many diameters outside it
TONE_MAX_LESION_SHARE = 0.35  # a larger 'lesion' is the body or a rash: use all skin
TONE_TYPICAL_PERCENTILE = 75  # without a ring, keep the skin pixels nearest the median colour
TONE_MIN_PIXELS = 150  # skin pixels (at WORK_SIZE) needed for an estimate
TONE_MIN_FRACTION = 0.01  # ... and at least this share of the field of view
TONE_MIN_L = 12.0  # median skin L* below this: too dark to judge
TONE_MAX_L = 92.0  # above this: too bright to judge
TONE_MAX_SPREAD = 60.0  # ITA interquartile range (degrees) above this: too uneven
TONE_CONFIDENT_MARGIN = 8.0  # ITA degrees from a type boundary for full confidence
# ITA cut points between Fitzpatrick types I|II, II|III, III|IV, IV|V, V|VI (degrees).
# Literature (Del Bino / Chardon categories): 55, 41, 28, 10, -30.
ITA_FITZPATRICK_CUTS = (55.0, 41.0, 28.0, 10.0, -30.0)
ITA_MONK_SHIFT = 0.0  # degrees added to a photo's ITA before matching Monk reference colours

# -- duplicates -------------------------------------------------------------------------------
DUPLICATE_MAX_DISTANCE = 6  # pHash bits: at most this many differ for the same picture
