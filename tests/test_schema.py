import numpy as np
import pytest

from pidx.data import schema
from pidx.errors import DataError


def test_21_features_and_class_order():
    assert len(schema.FEATURE_COLUMNS) == 21
    assert schema.CLASS_NAMES == ("pi", "ka", "pr", "el")
    assert schema.CLASS_PDG == (211, 321, 2212, 11)


def test_pdg_either_sign_maps_to_class():
    pdg = np.array([211, -211, 321, -321, 2212, -2212, 11, -11])
    assert schema.pdg_to_class(pdg).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_unknown_pdg_lists_codes_and_counts():
    with pytest.raises(DataError) as err:
        schema.pdg_to_class(np.array([211, 13, 13, 22]), source="f.csv")
    msg = str(err.value)
    assert "f.csv" in msg and "13 (2 rows)" in msg and "22 (1 rows)" in msg and "mc_pdg" in msg


def test_default_layout_groups_and_slices():
    layout = schema.DEFAULT_LAYOUT
    assert layout.group_names == ("tpc", "tof", "bayes", "kinematics")
    assert layout.group_slices == ((0, 5), (5, 10), (10, 14), (14, 19))
    # availability features for the three flagged groups follow the group columns
    assert layout.feature_names[19:] == ("available_tpc", "available_tof", "available_bayes")
    assert layout.num_features == 22
    assert set(layout.input_columns) == set(schema.FEATURE_COLUMNS)


def test_user_group_extends_layout_and_round_trips():
    trd = schema.DetectorGroup("trd", ("trd_signal", "trd_nsigma_el"), flag="has_trd")
    layout = schema.make_layout([trd])
    assert layout.group_names == ("tpc", "tof", "bayes", "trd", "kinematics")
    assert "has_trd" in layout.input_columns
    assert schema.FeatureLayout.from_dict(layout.to_dict()) == layout


def test_layout_rejects_duplicate_columns():
    with pytest.raises(DataError, match="more than one detector group"):
        schema.FeatureLayout((schema.TPC, schema.DetectorGroup("x", ("tpc_signal",))))
