"""Segmentation, statistics, meshes and implants on analytic phantoms, with the accuracy figures (issue #19).

Run: ``python examples/imaging_models_phantom.py [OUTPUT_FOLDER]`` (default: a temporary folder). Prints

1. the 20 mm sphere's volume and surface-area errors at 0.5, 1 and 2 mm voxels, from the raw voxel mask's surface
   and from ours (smoothed marching cubes), against 4/3 pi r^3 and 4 pi r^2;
2. decimation: faces, area and volume change;
3. an image segmented (threshold + largest piece), its Slicer-style statistics, its mesh written as STL;
4. implant sizing from measured anatomy (cup from a femoral head, stent-graft from an aortic neck), and a
   case the measurement cannot support;
5. a cranial plate made by mirroring a skull phantom with a defect, written as a watertight STL.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medtwin.imaging import implants, segment
from medtwin.imaging import mesh as meshing
from medtwin.imaging import phantoms as ph
from medtwin.imaging.stats import segment_statistics


def accuracy() -> None:
    sphere = ph.Sphere([0.3, -0.2, 0.1], 10.0)  # the 20 mm sphere, off the voxel grid
    print("20 mm sphere: error vs analytic (volume by voxel count; area and volume of the surface)")
    for h in (0.5, 1.0, 2.0):
        labels = ph.label_volume(sphere, ph.grid_around([sphere], (h, h, h), margin_mm=3.0))
        count_ml = float(labels.data.sum()) * labels.voxel_volume_ml
        raw = meshing.mesh_label_map(labels, 1, smoothing_iterations=0)
        ours = meshing.mesh_label_map(labels, 1)
        print(f"  {h:3.1f} mm voxels: count volume {100 * (count_ml / sphere.volume_ml - 1):+6.2f} %   "
              f"raw-mask area {100 * (raw.area_mm2 / sphere.area_mm2 - 1):+6.2f} %   "
              f"smoothed area {100 * (ours.area_mm2 / sphere.area_mm2 - 1):+6.2f} %, "
              f"volume {100 * (ours.volume_ml / sphere.volume_ml - 1):+6.2f} %")
    labels = ph.label_volume(sphere, ph.grid_around([sphere], (0.5, 0.5, 0.5), margin_mm=3.0))
    full = meshing.mesh_label_map(labels, 1)
    for target in (full.n_faces // 4, full.n_faces // 10, full.n_faces // 40):
        small = meshing.decimate(full, target)
        print(f"  decimated {full.n_faces} -> {small.n_faces} faces: area {small.meta['area_change_pct']} %, "
              f"volume {small.meta['volume_change_pct']} %, watertight {meshing.check_mesh(small).ok}")


def segment_and_mesh(out: Path) -> None:
    lesion = ph.Ellipsoid([5.0, -2.0, 8.0], [14.0, 9.0, 7.0], ph.rotation_about([0, 1, 1], 30))
    speck = ph.Sphere([-12.0, 10.0, -8.0], 2.0)
    g = ph.grid_around([lesion, speck], (0.7, 0.7, 1.0), margin_mm=4.0, frame="LPS")
    image = g.with_data(np.maximum(ph.intensity_volume(lesion, g, 250.0, 30.0).data,
                                   ph.intensity_volume(speck, g, 250.0, 30.0).data)
                        + np.random.default_rng(4).normal(0.0, 8.0, g.shape), units="HU")
    labels = segment.apply_recipe(image, segment.Recipe(lower=140.0, keep_largest=True, name="lesion"))
    (stat,) = segment_statistics(labels)
    print(f"\nsegmented 'lesion' (analytic {lesion.volume_ml:.3f} mL, {lesion.area_mm2:.1f} mm2, "
          f"Feret {lesion.feret_mm:.1f} mm):")
    print(f"  volume {stat.volume_ml:.3f} mL, area {stat.surface_area_mm2:.1f} mm2, Feret "
          f"{stat.feret_diameter_mm:.1f} mm, centroid {np.round(stat.centroid_mm, 2).tolist()} mm {stat.frame}")
    surface = meshing.mesh_label_map(labels, 1, target_faces=5000)
    path = meshing.export_mesh(surface, out / "lesion.stl")
    print(f"  {path}: {surface.n_faces} faces, {surface.header()}")


def sizing() -> None:
    head = ph.Sphere([0.0, 0.0, 0.0], 24.0)
    g = ph.grid_around([head], (0.8, 0.8, 0.8))
    m = implants.femoral_head_diameter(ph.label_volume(head, g))
    cup = implants.size_implant("acetabular-cup", m.value_mm, m.uncertainty_mm)
    print(f"\nfemoral head {m.value_mm:.2f} +- {m.uncertainty_mm:.2f} mm (true 48), {cup.status} catalogue: {cup.reason}")
    neck = ph.Tube([[0.0, 0.0, -30.0], [0.0, 0.0, 30.0]], 11.0)
    v = implants.vessel_diameter(ph.label_volume(neck, ph.grid_around([neck], (0.8, 0.8, 1.5))),
                                 [0.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    graft = implants.size_implant("aortic-stent-graft", v.value_mm, v.uncertainty_mm)
    print(f"aortic neck {v.value_mm:.2f} +- {v.uncertainty_mm:.2f} mm (true 22): {graft.reason}")
    vague = implants.size_implant("aortic-stent-graft", 24.0, 2.5)
    print(f"aortic neck 24 +- 2.5 mm (a coarse scan): {vague.reason}")


def plate(out: Path) -> None:
    phantom = ph.skull_phantom(1.5, turn_deg=3.0)
    started = time.perf_counter()
    result = implants.cranial_plate(phantom.skull)
    truth = phantom.missing
    p = result.plate.data > 0
    dice = 2.0 * float((p & truth).sum()) / float(p.sum() + truth.sum())
    path = meshing.export_mesh(result.mesh, out / "cranial_plate.stl")
    print(f"\ncranial plate: plane normal {np.round(result.plane_normal, 4).tolist()} (true "
          f"{np.round(phantom.plane_normal, 4).tolist()}), {result.volume_ml:.2f} mL (missing bone "
          f"{float(truth.sum()) * phantom.skull.voxel_volume_ml:.2f} mL), Dice {dice:.3f}, watertight "
          f"{meshing.check_mesh(result.mesh).ok}, {time.perf_counter() - started:.1f} s -> {path}")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="medtwin-imaging-"))
    out.mkdir(parents=True, exist_ok=True)
    accuracy()
    segment_and_mesh(out)
    sizing()
    plate(out)


if __name__ == "__main__":
    main()
