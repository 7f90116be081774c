"""Direct (non-conservative) forces: a ``non_conservative_force`` target read
from a forces key, predicted per atom by gnn and ace_mp without a backward
pass, exported as metatomic's standard output; equivariance, exported equals
in memory (also through ASE), D3 added to it at export, and a joint training in
which the direct forces approach the conservative ones."""

import numpy as np
import pytest
import torch
from metatomic.torch import ModelEvaluationOptions, ModelOutput, load_atomistic_model

from atomtrain.architectures.hypers import deep_merge, defaults_of, resolve_hypers
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.dataset import read_dataset
from atomtrain.data.info import DatasetInfo
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors
from atomtrain.export import save_exported
from atomtrain.options.expand import expand_dataset
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate
from atomtrain.testing.fixtures import fresh, raw_outputs, read_bundled, run
from atomtrain.training.evaluate import predict


F64 = torch.float64
CPU = torch.device("cpu")
NC = "non_conservative_force"
DATA_CARBON = (
    __import__("pathlib").Path(__file__).parent / "resources" / "carbon_reduced_100.xyz"
)
SMALL = {
    "gnn": {"width": 16, "num_vectors": 4, "num_heads": 2, "head_width": 16},
    "ace_mp": {"channels": 8, "l_max": 2, "radial_hidden": 8, "num_radial": 4},
}
ARCHITECTURES = sorted(SMALL)


def read(path, targets):
    section = expand_dataset({"systems": str(path), "targets": targets}, "set")
    return read_dataset(validate(DatasetSection, section).model_dump(), {})


@pytest.fixture(scope="module")
def water(request):
    """10 frames of 192-atom water, energy + forces, and the same forces as
    the direct-force target."""
    path = request.path.parent / "resources" / "water_10.xyz"
    targets = {"energy": {"key": "energy", "forces": {"key": "forces"}}}
    return read(path, {**targets, NC: {"key": "forces"}})


def test_options_read_direct_forces_from_a_forces_key(water, tmp_path):
    structures, infos = water
    info = infos[NC]
    assert (info.quantity, info.unit, info.per_atom, info.rank) == (
        "force",
        "eV/A",
        True,
        1,
    )
    assert info.gradients == []
    for structure in structures:
        torch.testing.assert_close(
            structure.targets[NC].reshape(-1, 3), structure.forces["energy"]
        )
    # the short forms: the key alone, or true for the key 'forces'
    for short in ("forces", True):
        section = expand_dataset({"systems": "x.xyz", "targets": {NC: short}}, "s")
        target = section["targets"][NC]
        assert target["key"] == "forces" and target["per_atom"] is True
        assert target["type"] == {"cartesian": {"rank": 1}}


def build(name, infos):
    documentation = import_documentation(name)
    hypers = deep_merge(defaults_of(documentation.ModelHypers), SMALL[name])
    torch.manual_seed(0)
    model = import_architecture(name).__model__(hypers, DatasetInfo([1, 6, 8], infos))
    model = model.to(F64).eval()
    with torch.no_grad():  # a non-trivial scale of the heads
        for head in model.cartesian_heads.values():
            head.baseline.scale.fill_(1.7)
    return model


def rotation(seed: int, reflect: bool) -> torch.Tensor:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.linalg.det(q))  # a proper rotation
    return torch.tensor(-q if reflect else q)


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("reflect", [False, True])
def test_direct_forces_rotate_with_the_structure(name, reflect, water):
    model = build(name, water[1])
    outputs = {NC: ModelOutput(unit="eV/A", sample_kind="atom")}
    structures = read_bundled("ethanol")[:2] + [water[0][0]]
    for seed, structure in enumerate(structures):
        matrix = rotation(seed, reflect)
        moved = fresh(
            structure, structure.positions @ matrix.T, structure.cell @ matrix.T
        )
        before = raw_outputs(model, [structure], outputs)[NC].block().values
        after = raw_outputs(model, [moved], outputs)[NC].block().values
        assert float(before.abs().mean()) > 1e-3  # not trivially zero
        torch.testing.assert_close(
            after.squeeze(-1), before.squeeze(-1) @ matrix.T, rtol=1e-9, atol=1e-10
        )


def exported_batch(loaded, targets, structures):
    """Predictions of an exported model, with the lists it requests."""

    def call(systems, outputs):
        options = ModelEvaluationOptions(length_unit="angstrom", outputs=outputs)
        return loaded(systems, options, check_consistency=True)

    requests = loaded.requested_neighbor_lists()
    structures = [fresh(s) for s in structures]
    compute_neighbors(structures, requests)
    return predict(call, structures, requests, targets, F64, CPU)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_exported_equals_in_memory(name, water, tmp_path):
    model = build(name, water[1])
    path = str(tmp_path / "model.pt")
    save_exported(model.export(), path)
    loaded = load_atomistic_model(path)
    output = loaded.capabilities().outputs[NC]
    assert (output.sample_kind, output.unit) == ("atom", "eV/A")
    structures = [water[0][0]] + read_bundled("ethanol")[:2]
    got = exported_batch(loaded, model.dataset_info.targets, structures)
    want = run(model, structures)
    torch.testing.assert_close(got.values[NC], want.values[NC], rtol=1e-10, atol=0)
    torch.testing.assert_close(got.forces["energy"], want.forces["energy"])


def test_ase_calculator_uses_the_direct_forces(water, tmp_path, request):
    from ase.io import read as ase_read
    from metatomic_ase import MetatomicCalculator

    model = build("gnn", water[1])
    path = str(tmp_path / "model.pt")
    save_exported(model.export(), path)
    atoms = ase_read(str(request.path.parent / "resources" / "water_10.xyz"), 0)
    want = run(model, [water[0][0]])
    atoms.calc = MetatomicCalculator(path, non_conservative="forces")
    direct = torch.tensor(atoms.get_forces())
    predicted = want.values[NC].reshape(-1, 3)
    # the calculator removes the net force (momentum stays conserved in MD)
    torch.testing.assert_close(direct, predicted - predicted.mean(dim=0))
    atoms.calc = MetatomicCalculator(path)
    conservative = torch.tensor(atoms.get_forces())
    torch.testing.assert_close(conservative, want.forces["energy"])
    assert not torch.allclose(direct, conservative, atol=1e-3)


def test_d3_at_export_corrects_the_direct_forces(water, tmp_path):
    from atomtrain.export import with_d3

    pytest.importorskip("tad_dftd3")
    model = build("gnn", water[1])
    molecules = read_bundled("ethanol")[:2]
    targets = model.dataset_info.targets
    paths = {}
    for label, exported in (("plain", model.export()), ("d3", None)):
        if exported is None:
            exported = with_d3(model.export(), "pbe")
        paths[label] = str(tmp_path / f"{label}.pt")
        save_exported(exported, paths[label])
    plain = exported_batch(load_atomistic_model(paths["plain"]), targets, molecules)
    d3 = exported_batch(load_atomistic_model(paths["d3"]), targets, molecules)
    # D3 added to the direct forces equals D3 added to the conservative ones
    added_direct = d3.values[NC] - plain.values[NC]
    added_conservative = d3.forces["energy"] - plain.forces["energy"]
    assert float(added_conservative.abs().max()) > 1e-3
    torch.testing.assert_close(
        added_direct.reshape(-1, 3), added_conservative, rtol=1e-7, atol=1e-9
    )


def test_joint_training_brings_direct_forces_to_the_conservative_ones(water, tmp_path):
    structures, infos = water
    name = "gnn"
    documentation = import_documentation(name)
    hypers = deep_merge(defaults_of(documentation.ModelHypers), SMALL[name])
    training = resolve_hypers(
        documentation.TrainerHypers,
        {
            "num_epochs": 25,
            "batch_size": 2,
            "learning_rate": 0.02,
            "checkpoint_interval": 1000,
        },
        "architecture.training",
        name,
    )
    torch.manual_seed(0)
    arch = import_architecture(name)
    model = arch.__model__(hypers, DatasetInfo([1, 8], infos)).to(F64)
    validation = structures[8:]
    reference = torch.cat([s.forces["energy"] for s in validation])

    def errors():
        batch = run(model.eval(), validation)
        direct = batch.values[NC].reshape(-1, 3)
        conservative = batch.forces["energy"]
        mean = lambda x: float(x.abs().mean())  # noqa: E731
        return mean(direct - conservative), mean(direct - reference)

    _, direct_error_before = errors()
    trainer = arch.__trainer__(training)
    trainer.train(model, F64, [CPU], [structures[:8]], [validation], str(tmp_path))
    gap, direct_error = errors()
    size = float(reference.abs().mean())
    assert direct_error < 0.5 * direct_error_before, (direct_error, direct_error_before)
    # on frames it did not train on, the two force heads agree to within 40 %
    # of the force size after 100 steps (they only learn from the same labels)
    assert gap < 0.45 * size, (gap, size)


# ----------------------------------------------------------------------------
# direct stress

NCS = "non_conservative_stress"


def with_stress(infos):
    from atomtrain.data.info import TargetInfo

    stress = TargetInfo(NCS, quantity="stress", unit="eV/A^3", rank=2)
    return {**infos, NCS: stress}


def direct_stress(model, structures):
    outputs = {NCS: ModelOutput(unit="eV/A^3", sample_kind="system")}
    return raw_outputs(model, structures, outputs)[NCS].block().values.squeeze(-1)


def test_options_read_direct_stress(tmp_path):
    import ase.io

    frames = ase.io.read(str(DATA_CARBON), ":3")
    for atoms in frames:
        atoms.info["dft_stress"] = np.arange(9.0).reshape(3, 3) * 1e-3
    path = tmp_path / "carbon.xyz"
    ase.io.write(str(path), frames)
    structures, infos = read(path, {NCS: {"key": "dft_stress"}})
    info = infos[NCS]
    assert (info.quantity, info.unit, info.per_atom, info.rank) == (
        "stress",
        "eV/A^3",
        False,
        2,
    )
    torch.testing.assert_close(
        structures[0].targets[NCS].reshape(3, 3),
        torch.arange(9.0, dtype=F64).reshape(3, 3) * 1e-3,
    )


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_direct_stress_rotates_and_is_intensive(name, water):
    model = build(name, with_stress(water[1]))
    cell = read_bundled("carbon")[0]
    stress = direct_stress(model, [cell])[0]
    assert float(stress.abs().max()) > 1e-3
    torch.testing.assert_close(stress, stress.T)  # symmetric
    for seed, reflect in [(0, False), (1, True)]:
        matrix = rotation(seed, reflect)
        moved = fresh(cell, cell.positions @ matrix.T, cell.cell @ matrix.T)
        torch.testing.assert_close(
            direct_stress(model, [moved])[0], matrix @ stress @ matrix.T
        )
    # a 2x1x1 supercell: the same stress (a sum over atoms over the volume)
    supercell = cell.cell.clone()
    supercell[0] *= 2
    double = Structure(
        types=torch.cat([cell.types, cell.types]),
        positions=torch.cat([cell.positions, cell.positions + cell.cell[0]]),
        cell=supercell,
        pbc=cell.pbc.clone(),
    )
    torch.testing.assert_close(direct_stress(model, [double])[0], stress)
    # molecules have no volume, hence no stress
    molecule = direct_stress(model, read_bundled("ethanol")[:1])[0]
    assert float(molecule.abs().max()) == 0.0


def test_ase_uses_direct_forces_and_stress(water, tmp_path, request):
    from ase.io import read as ase_read
    from metatomic_ase import MetatomicCalculator

    model = build("gnn", with_stress(water[1]))
    path = str(tmp_path / "model.pt")
    save_exported(model.export(), path)
    loaded = load_atomistic_model(path)
    assert loaded.capabilities().outputs[NCS].sample_kind == "system"
    atoms = ase_read(str(request.path.parent / "resources" / "water_10.xyz"), 0)
    structure = water[0][0]
    forces = run(model, [structure]).values[NC].reshape(-1, 3)
    stress = direct_stress(model, [structure])[0]
    atoms.calc = MetatomicCalculator(path, non_conservative=True)
    torch.testing.assert_close(
        torch.tensor(atoms.get_forces()), forces - forces.mean(dim=0)
    )
    voigt = [stress[0, 0], stress[1, 1], stress[2, 2]]
    voigt += [stress[1, 2], stress[0, 2], stress[0, 1]]
    torch.testing.assert_close(
        torch.tensor(atoms.get_stress()), torch.stack(voigt), rtol=1e-6, atol=1e-9
    )


def test_joint_training_with_direct_stress(tmp_path):
    import ase.io

    frames = ase.io.read(str(DATA_CARBON), ":24")
    for atoms in frames:  # the stress of the data: minus the virial over the volume
        virial = np.array(atoms.info["virial"], dtype=float).reshape(3, 3)
        atoms.info["dft_stress"] = -virial / atoms.get_volume()
    path = tmp_path / "carbon.xyz"
    ase.io.write(str(path), frames)
    energy = {"key": "energy", "forces": {"key": "force"}, "virial": {"key": "virial"}}
    structures, infos = read(path, {"energy": energy, NCS: {"key": "dft_stress"}})
    for structure in structures:
        torch.testing.assert_close(
            structure.targets[NCS].reshape(3, 3), structure.stress["energy"]
        )
    name = "gnn"
    documentation = import_documentation(name)
    hypers = deep_merge(defaults_of(documentation.ModelHypers), SMALL[name])
    training = resolve_hypers(
        documentation.TrainerHypers,
        {"num_epochs": 15, "batch_size": 4, "learning_rate": 0.01},
        "architecture.training",
        name,
    )
    torch.manual_seed(0)
    arch = import_architecture(name)
    model = arch.__model__(hypers, DatasetInfo([6], infos)).to(F64)

    def errors():
        """Mean absolute error of the direct pressure and stress on the
        validation structures, and of the conservative stress."""
        predicted = direct_stress(model.eval(), structures[20:])
        reference = torch.stack([s.stress["energy"] for s in structures[20:]])
        pressure = predicted.diagonal(dim1=1, dim2=2).mean(1)
        reference_pressure = reference.diagonal(dim1=1, dim2=2).mean(1)
        conservative = run(model.eval(), structures[20:]).stress["energy"]
        mean = lambda x: float(x.abs().mean())  # noqa: E731
        return (
            mean(pressure - reference_pressure),
            mean(predicted - reference),
            mean(conservative - reference),
        )

    pressure_before, stress_before, _ = errors()
    trainer = arch.__trainer__(training)
    trainer.train(
        model, F64, [CPU], [structures[:20]], [structures[20:]], str(tmp_path)
    )
    pressure, stress, conservative = errors()
    assert pressure < 0.5 * pressure_before, (pressure, pressure_before)
    assert stress < 0.8 * stress_before, (stress, stress_before)
    # the anisotropic part stays far behind the conservative stress: the sites
    # of these carbon crystals nearly cancel the l = 1 features from which the
    # rank-2 head builds it (their norm is 0.1-6 % of that in ethanol)
    assert conservative < stress
