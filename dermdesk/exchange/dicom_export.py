"""One exported image as a DICOM VL Photographic Image (issue 16), written with pydicom.

Clinical and dermoscopic photos are both VL Photographic Image Storage objects, modality
XC; a dermoscopic one says so in its Image Type (``DERMOSCOPIC``) and Series Description.

Why not Dermoscopic Photography Image Storage (1.2.840.10008.5.1.4.1.1.77.1.7, modality
DMS): its IOD makes the Enhanced General Equipment module mandatory, and all four of that
module's attributes are Type 1 (a value required, empty not allowed): Manufacturer
(0008,0070), Manufacturer's Model Name (0008,1090), Device Serial Number (0018,1000) and
Software Versions (0018,1020). The library never keeps a serial number (EXIF serials are
dropped on import, and an export must not carry one), and most dermoscopic images (HAM10000,
PH2, ISIC 2017) carry no make, model or software at all. Its mandatory Dermoscopic Image
module also describes the acquisition (Light Source Polarization (0016,1001), Contact Method
(0016,1003), Immersion Media (0016,1004) when contact), which the library does not record
either (ISIC's ``dermoscopic_type`` is exported empty for the same reason). Filling these
with placeholders would make a file that claims what nobody measured.

The body site is an Anatomic Region code from SNOMED CT, taken from pydicom's own
code dictionary. Identity is the export's: patient id and name are the pseudonym, no dates,
no names, no free text; UIDs are derived from the export ids and content hashes, so the
same export writes the same bytes. An upright baseline JPEG is stored as it is (JPEG
Baseline transfer syntax, its de-identified bytes encapsulated, no re-encode); anything
else is decoded upright and stored uncompressed.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from dermdesk.imaging import decode, jpeg_segments

VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
SOF_BASELINE = 0xC0
# Library body sites -> names in pydicom's SNOMED CT dictionary (codes.SCT.<name>).
SITE_CODES = {
    "scalp": "Scalp",
    "face": "Face",
    "ear": "Ear",
    "nose": "Nose",
    "lip": "Lip",
    "neck": "Neck",
    "chest": "Chest",
    "abdomen": "Abdomen",
    "back": "Back",
    "trunk": "Trunk",
    "upper_extremity": "UpperLimb",
    "arm": "UpperArm",
    "forearm": "Forearm",
    "hand": "Hand",
    "lower_extremity": "LowerLimb",
    "thigh": "Thigh",
    "leg": "LowerLeg",
    "foot": "Foot",
}


def site_code(site: str | None) -> Any | None:
    """The SNOMED CT code of a library body site (None where the dictionary has no plain
    term: genital and acral sites are left uncoded rather than guessed)."""
    from pydicom.sr.codedict import codes

    name = SITE_CODES.get(site or "")
    return getattr(codes.SCT, name) if name else None


def _baseline_jpeg(data: bytes) -> bool:
    try:
        return any(m == SOF_BASELINE for m, *_ in jpeg_segments.segments(data))
    except jpeg_segments.NotAJpeg:
        return False


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=None, entropy_srcs=["dermdesk-export", *parts]))


def dicom_bytes(
    clean: bytes,
    ext: str,
    row: dict[str, Any],
    meta: dict[str, str],
    lesion_site: str | None,
) -> bytes:
    """A DICOM file of one exported image: ``clean`` is its de-identified bytes (JPEG or
    PNG), ``meta`` its exported metadata row (pseudonymous ids, sex, age bin, modality)."""
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    ds = Dataset()
    patient = meta["patient_id"] or meta["isic_id"]
    ds.PatientID = patient
    ds.PatientName = patient
    ds.PatientBirthDate = ""
    ds.PatientSex = {"male": "M", "female": "F"}.get(meta["sex"], "")
    if meta["age_approx"]:
        ds.PatientAge = f"{int(meta['age_approx']):03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "dermdesk export: pseudonymous ids, no dates, no free text"
    ds.StudyInstanceUID = _uid("study", patient)
    ds.SeriesInstanceUID = _uid("series", meta["lesion_id"] or meta["isic_id"])
    ds.SOPInstanceUID = _uid("image", row["id"])
    ds.SOPClassUID = VL_PHOTOGRAPHIC
    ds.StudyDate = ds.StudyTime = ds.ReferringPhysicianName = ds.AccessionNumber = ""
    ds.StudyID = ""
    ds.ContentDate = ds.ContentTime = ""
    ds.Modality = "XC"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    dermoscopic = row["modality"] == "dermoscopic"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DERMOSCOPIC" if dermoscopic else "CLINICAL"]
    ds.SeriesDescription = "dermoscopic photograph" if dermoscopic else "clinical photograph"
    ds.Manufacturer = row.get("device_make") or ""
    if row.get("device_model"):
        ds.ManufacturerModelName = row["device_model"]
    code = site_code(lesion_site)
    if code is not None:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = code.value, code.scheme_designator
        item.CodeMeaning = code.meaning
        ds.AnatomicRegionSequence = [item]
    ds.LossyImageCompression = "01" if ext == "jpg" else "00"
    img = Image.open(io.BytesIO(clean))
    upright_jpeg = ext == "jpg" and (row.get("orientation") or 1) == 1
    if upright_jpeg and _baseline_jpeg(clean) and img.mode in ("RGB", "L"):
        syntax = JPEG_BASELINE
        ds.Rows, ds.Columns = img.height, img.width
        rgb = img.mode == "RGB"
        ds.SamplesPerPixel = 3 if rgb else 1
        ds.PhotometricInterpretation = "YBR_FULL_422" if rgb else "MONOCHROME2"
        ds.PixelData = encapsulate([clean])
        ds["PixelData"].VR = "OB"
    else:
        syntax = EXPLICIT_LE
        pixels = decode.to_rgb8(decode.upright(decode.load(decode.open_image(clean))))
        arr = np.ascontiguousarray(np.asarray(pixels))
        ds.Rows, ds.Columns = arr.shape[0], arr.shape[1]
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = arr.tobytes()
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    meta_ds = FileMetaDataset()
    meta_ds.MediaStorageSOPClassUID = UID(VL_PHOTOGRAPHIC)
    meta_ds.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta_ds.TransferSyntaxUID = UID(syntax)
    ds.file_meta = meta_ds
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
