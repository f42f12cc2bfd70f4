import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.imaging.volume import LPS_TO_RAS, Volume, VolumeError, grid_affine


def test_lps_ras_round_trip_keeps_every_voxel_position() -> None:
    affine = grid_affine((0.5, 0.8, 2.0), (10.0, -20.0, 5.0), "LPS")
    v = Volume(np.zeros((4, 5, 6)), affine, "LPS")
    ras = v.to_frame("RAS")
    ijk = np.array([[0, 0, 0], [3, 4, 5], [1.5, 2.0, 0.5]])
    lps_pts = v.index_to_world(ijk)
    ras_pts = ras.index_to_world(ijk)
    assert np.allclose(ras_pts[:, :2], -lps_pts[:, :2]) and np.allclose(ras_pts[:, 2], lps_pts[:, 2])
    assert np.allclose(ras.to_frame("LPS").affine, affine)
    assert np.allclose(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))


def test_spacing_and_voxel_volume() -> None:
    v = Volume(np.zeros((2, 2, 2)), grid_affine((0.5, 0.5, 2.0)))
    assert np.allclose(v.spacing_mm, [0.5, 0.5, 2.0])
    assert v.voxel_volume_ml == pytest.approx(0.0005)


def test_singular_affine_is_named() -> None:
    a = np.eye(4)
    a[2, 2] = 0.0
    with pytest.raises(VolumeError) as err:
        Volume(np.zeros((2, 2, 2)), a)
    assert err.value.field == "affine" and "singular" in err.value.message


def test_not_three_d_is_named() -> None:
    with pytest.raises(VolumeError) as err:
        Volume(np.zeros((2, 2)), np.eye(4))
    assert err.value.field == "data"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=3, max_size=3),
       st.lists(st.floats(0.2, 5.0), min_size=3, max_size=3))
def test_world_index_round_trip(point: list[float], spacing: list[float]) -> None:
    v = Volume(np.zeros((3, 3, 3)), grid_affine((spacing[0], spacing[1], spacing[2]), (1.0, 2.0, 3.0)))
    assert np.allclose(v.index_to_world(v.world_to_index(point)), point, atol=1e-9)
