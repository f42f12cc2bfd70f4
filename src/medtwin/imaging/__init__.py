"""Imaging in the twin: volumes from DICOM and NIfTI, segmentation, meshes, trajectory planning and implants.

Domain code: numpy/scipy (and imaging libraries) only; no store, API or web imports.
"""
