"""``atomtrain arch new``: scaffold -> check -> train -> export, in-tree and as a
pip-installed plug-in whose generated conformance tests pass."""

import ast
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from atomtrain.architectures.scaffold import EXPERIMENTAL, scaffold
from atomtrain.cli import main
from atomtrain.errors import UserError


os.environ.setdefault("OMP_NUM_THREADS", "1")
CHECK_DATA = os.path.join(os.path.dirname(EXPERIMENTAL), "check_data", "ethanol.xyz")
BIN = os.path.dirname(sys.executable)
MAINTAINER = ("Ada Lovelace", "ada@lovelace.ac.uk")


def test_refuses_bad_names_and_existing_folders(tmp_path):
    for bad in ("1abc", "my-arch", "class", "My", "_x"):
        with pytest.raises(UserError, match="architecture name|not a valid"):
            scaffold(bad, str(tmp_path), plugin=True)
    scaffold("twice", str(tmp_path), plugin=True)
    with pytest.raises(UserError, match="already exists"):
        scaffold("twice", str(tmp_path), plugin=True)
    os.makedirs(tmp_path / "taken")
    with pytest.raises(UserError, match="already exists"):
        scaffold("taken", str(tmp_path))


def test_plugin_layout(tmp_path):
    root = scaffold("layout", str(tmp_path), plugin=True)
    assert root == str(tmp_path / "atomtrain-layout")
    files = sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, names in os.walk(root)
        for f in names
    )
    assert files == [
        "README.md",
        "pyproject.toml",
        "src/atomtrain_layout/__init__.py",
        "src/atomtrain_layout/documentation.py",
        "src/atomtrain_layout/model.py",
        "src/atomtrain_layout/trainer.py",
        "tests/test_layout.py",
    ]
    with open(os.path.join(root, "pyproject.toml")) as file:
        pyproject = file.read()
    assert 'dependencies = ["atomtrain"]' in pyproject
    assert '[project.entry-points."atomtrain.architectures"]' in pyproject
    assert 'layout = "atomtrain_layout"' in pyproject
    package = os.path.join(root, "src", "atomtrain_layout")
    with open(os.path.join(package, "__init__.py")) as file:
        assert '__stage__ = "experimental"' in file.read()
    with open(os.path.join(root, "tests", "test_layout.py")) as file:
        test = file.read()
    assert "from atomtrain.testing import ArchitectureTests" in test
    assert 'architecture = "experimental.layout"' in test
    with open(os.path.join(package, "trainer.py")) as file:
        assert "__checkpoint_version__ = 1" in file.read()


def _init_text(root: str, name: str) -> str:
    with open(os.path.join(root, "src", f"atomtrain_{name}", "__init__.py")) as file:
        return file.read()


def test_maintainer_option_is_written_and_placeholders_refused(tmp_path, capsys):
    contact = "Ada Lovelace <ada@lovelace.ac.uk>"
    command = ["arch", "new", "by_option", "--plugin", "--dir", str(tmp_path)]
    assert main([*command, "--maintainer", contact]) == 0
    root = str(tmp_path / "atomtrain-by_option")
    assert '__maintainers__ = [("Ada Lovelace", "ada@lovelace.ac.uk")]' in (
        _init_text(root, "by_option")
    )
    with open(os.path.join(root, "pyproject.toml")) as file:
        pyproject = file.read()
    assert 'authors = [{ name = "Ada Lovelace", email = "ada@lovelace.ac.uk" }]' in (
        pyproject
    )
    capsys.readouterr()
    refused = ["arch", "new", "refused", "--plugin", "--dir", str(tmp_path)]
    for bad, why in (
        ("Your Name <you@example.com>", "not a maintainer's name"),
        ("Ada", "the contact is empty"),
        ("Ada <ada@uni.example>", "reserved domain"),
        ("Ada <ada@example.org>", "reserved for examples"),
        ("", "not a maintainer's name"),
    ):
        assert main([*refused, "--maintainer", bad]) != 0
        error = capsys.readouterr().err
        assert f"--maintainer '{bad}'" in error and why in error, error
    assert not os.path.exists(tmp_path / "atomtrain-refused")


def test_handle_and_quotes_in_maintainer(tmp_path):
    root = scaffold(
        "handle", str(tmp_path), plugin=True, maintainer=('Jo "JB" Bloggs', "@jb")
    )
    tree = ast.parse(_init_text(root, "handle"))
    declared = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and node.targets[0].id in ("__maintainers__", "__authors__")
    }
    assert declared["__maintainers__"] == [('Jo "JB" Bloggs', "@jb")]
    assert declared["__authors__"] == [('Jo "JB" Bloggs', "@jb")]
    with open(os.path.join(root, "pyproject.toml")) as file:
        assert 'authors = [{ name = "Jo \\"JB\\" Bloggs" }]' in file.read()


def test_maintainer_from_git_config_or_prompt(tmp_path, monkeypatch, capsys):
    from atomtrain.architectures import maintainers

    git = {"user.name": "Grace Hopper", "user.email": "grace@navy.mil"}
    monkeypatch.setattr(maintainers, "_git_config", lambda key: git.get(key, ""))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(["arch", "new", "from_git", "--plugin", "--dir", str(tmp_path)]) == 0
    text = _init_text(str(tmp_path / "atomtrain-from_git"), "from_git")
    assert '[("Grace Hopper", "grace@navy.mil")]' in text

    # on a terminal: asked, until the answer is a real contact; Enter keeps git's
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    answers = iter(["Your Name <you@example.com>", "Jo", ""])
    prompts = []
    monkeypatch.setattr(
        "builtins.input", lambda prompt: prompts.append(prompt) or next(answers)
    )
    assert main(["arch", "new", "asked", "--plugin", "--dir", str(tmp_path)]) == 0
    assert len(prompts) == 3 and "[Grace Hopper <grace@navy.mil>]" in prompts[0]
    text = _init_text(str(tmp_path / "atomtrain-asked"), "asked")
    assert '[("Grace Hopper", "grace@navy.mil")]' in text
    told = capsys.readouterr().out
    assert "not a maintainer's name" in told and "the contact is empty" in told

    # a placeholder in git's configuration is no default: the template's
    # placeholder is written (and 'arch check' refuses it)
    git["user.email"] = "grace@example.com"
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(["arch", "new", "no_git", "--plugin", "--dir", str(tmp_path)]) == 0
    text = _init_text(str(tmp_path / "atomtrain-no_git"), "no_git")
    assert '[("Your Name", "you@example.com")]' in text


def _options(tmp_path, name: str) -> str:
    path = tmp_path / "options.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            architecture:
              name: {name}
              training: {{num_epochs: 3, batch_size: 4}}
            training_set:
              systems: {CHECK_DATA}
              targets:
                energy: {{key: energy, unit: eV, forces: {{key: forces}}}}
            validation_set: 0.2
            test_set: 0.0
            seed: 1
            """
        )
    )
    return str(path)


def test_in_tree_scaffold_check_train_export(tmp_path, monkeypatch, capsys):
    from metatomic.torch import load_atomistic_model

    from atomtrain.architectures.check import check_architecture

    name = "zz_scaffold_roundtrip"
    folder = os.path.join(EXPERIMENTAL, name)
    assert not os.path.exists(folder)
    try:
        assert scaffold(name, maintainer=MAINTAINER) == folder
        assert os.path.isfile(os.path.join(folder, "model.py"))
        assert os.path.isfile(os.path.join(folder, "tests", f"test_{name}.py"))
        full = f"experimental.{name}"
        report = check_architecture(full)
        print(report.render())
        assert report.passed, report.render()

        monkeypatch.chdir(tmp_path)
        assert main(["train", _options(tmp_path, full), "--output-dir", "run"]) == 0
        assert os.path.isfile("run/train.csv")
        assert main(["export", "model.ckpt", "-o", "exported.pt"]) == 0
        exported = load_atomistic_model("exported.pt")
        assert "energy" in exported.capabilities().outputs
        assert main(["arch", "list"]) == 0
        rows = [r for r in capsys.readouterr().out.splitlines() if full in r]
        assert rows and "experimental" in rows[0] and "in-tree" in rows[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for module in [m for m in sys.modules if name in m]:
            del sys.modules[module]
    assert not os.path.exists(folder)


def _run(*command, cwd=None, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        list(command), capture_output=True, text=True, cwd=cwd, env=env,
        timeout=timeout,
    )  # fmt: skip
    return result


def test_plugin_installs_lists_and_passes_its_generated_tests(tmp_path):
    name = "zzplugintest"
    root = scaffold(name, str(tmp_path), plugin=True, maintainer=MAINTAINER)
    pip = [sys.executable, "-m", "pip"]
    install = _run(
        *pip, "install", "-q", "-e", root, "--no-deps", "--no-build-isolation"
    )
    assert install.returncode == 0, install.stderr
    try:
        listing = _run(os.path.join(BIN, "atomtrain"), "arch", "list")
        assert listing.returncode == 0, listing.stderr
        rows = [r for r in listing.stdout.splitlines() if f"experimental.{name}" in r]
        assert len(rows) == 1, listing.stdout
        assert "experimental" in rows[0].split()[1]
        assert rows[0].rstrip().endswith(f"plug-in atomtrain-{name}")
        assert "Ada Lovelace" in rows[0] and "installed" in rows[0]
        tests = _run(
            sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
            os.path.join(root, "tests"), cwd=root,
        )  # fmt: skip
        assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
        assert " passed" in tests.stdout
    finally:
        _run(*pip, "uninstall", "-y", "-q", f"atomtrain-{name}")
    listing = _run(os.path.join(BIN, "atomtrain"), "arch", "list")
    assert f"experimental.{name}" not in listing.stdout
