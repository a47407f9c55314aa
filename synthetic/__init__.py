"""The built-in synthetic 4DCT: a breathing thorax phantom and the scanner-like export of it.

- :mod:`synthetic.params`: per-patient parameters and the ranges they are drawn from.
- :mod:`synthetic.grid`: the voxel grid (size, spacing, LPS or RAS voxel order, affine).
- :mod:`synthetic.phantom`: anatomy and breathing; the ten phases and their average, in HU.
- :mod:`synthetic.export`: the ``res_avg/``, ``res_phases/`` and ``res_structures/`` tree of
  NIfTI files.
- :mod:`synthetic.warped`: a second generator, a static anatomy warped by a smooth breathing field.
- :mod:`synthetic.scanner`: reconstruction kernel, noise, stored HU and the AVG.
- :mod:`synthetic.families`: named families of scanner, patient and breathing ranges
  (:data:`FAMILIES`) and :func:`write_family`.

Dependencies: this package sits above ``data/``. It writes its files with
:func:`data.nifti_io.save_volume`, the project's one NIfTI writer, and otherwise uses ``util/``
only. ``data/`` (and ``util/``) never import ``synthetic``; ``models/`` and ``options/`` are not
imported here: the phantom knows nothing of training.
"""

from synthetic.export import (
    STORAGES,
    TUMOUR_STRUCTURE,
    avg_file_name,
    patient_id,
    phase_file_name,
    structure_file_name,
    write_synthetic_4dct,
)
from synthetic.families import FAMILIES, Family, FamilyPatient, family_patient, write_family
from synthetic.grid import DEFAULT_GRID, ORIENTATIONS, SyntheticGrid
from synthetic.params import (
    DEFAULT_RANGES,
    ParamRanges,
    PatientParams,
    patient_params,
    sample_patient_params,
)
from synthetic.phantom import (
    N_PHASES,
    SyntheticPatient,
    noiseless_phases,
    phase_displacement_mm,
    synthetic_patient,
    tumour_masks,
)
from synthetic.warped import WarpedParams, warped_patient

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_RANGES",
    "FAMILIES",
    "N_PHASES",
    "ORIENTATIONS",
    "STORAGES",
    "TUMOUR_STRUCTURE",
    "Family",
    "FamilyPatient",
    "ParamRanges",
    "PatientParams",
    "SyntheticGrid",
    "SyntheticPatient",
    "WarpedParams",
    "avg_file_name",
    "family_patient",
    "noiseless_phases",
    "patient_id",
    "patient_params",
    "phase_displacement_mm",
    "phase_file_name",
    "sample_patient_params",
    "structure_file_name",
    "synthetic_patient",
    "tumour_masks",
    "warped_patient",
    "write_family",
    "write_synthetic_4dct",
]
