"""A corpus of bad inputs: each is answered by one clear line, never a traceback.

Every case builds its files under its own ``tmp_path`` (a config, a manifest of six 8x8
PNG images, a relatedness table, an array, ...), breaks one thing, runs ``dmtl`` and
checks: the exit status (2), exactly one ``error:`` line, the fragments that name the
file, field or row at fault, and no traceback. Most cases run in-process through typer's
``CliRunner``; a few run ``python -m dmtl`` in a real process. ``datasets check`` has its
own tests at the end (it lists unreadable images and exits with status 1).
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from dmtl.cli import app
from dmtl.cli.errors import console, err_console
from dmtl.errors import ConfigError

MANIFEST = """id,image,split,digit,attr/x,attr/y
0,images/0.png,train,a,1,0
1,images/1.png,train,b,0,1
2,images/2.png,train,c,1,
3,images/3.png,train,a,,1
4,images/4.png,test,b,0,0
5,images/5.png,test,c,1,1
"""

TABLE = "digit,x,y\na,0.9,0.1\nb,0.2,0.8\nc,0.5,0.5\n"

CONFIG: dict[str, Any] = {
    "tasks": [
        {"name": "digit", "type": "categorical", "classes": ["a", "b", "c"]},
        {"name": "attr", "type": "binary_set", "labels": ["x", "y"]},
    ],
    "sources": [{"name": "s", "manifest": "m.csv"}],
    "backbone": {"name": "mlp", "options": {"hidden": [8]}},
    "trainer": {
        "max_epochs": 1, "steps_per_epoch": 1, "batch_size": 4, "progress_bar": False,
        "accelerator": "cpu",
    },
}


class Kit:
    """Files for one case under ``folder``: six images, the manifest, a config."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        (folder / "images").mkdir()
        for i in range(6):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"images/{i}.png")
        self.file("m.csv", MANIFEST)
        self.file("table.csv", TABLE)

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def config(self, name: str = "c.yaml", edit: Callable[[dict[str, Any]], None] | None = None,
               **source: Any) -> Path:
        """The base config, its first source updated with ``source``, then ``edit``-ed."""
        data = copy.deepcopy(CONFIG)
        data["output"] = {"dir": str(self.dir / "runs" / "r")}
        data["sources"][0].update(source)
        if edit is not None:
            edit(data)
        return self.file(name, yaml.safe_dump(data, sort_keys=False))

    def manifest(self, text: str | bytes, name: str = "bad.csv") -> Path:
        """A config whose source reads ``text`` as its manifest."""
        self.file(name, text)
        return self.config(manifest=name)


@dataclass(frozen=True)
class Case:
    """A bad input: the command line it builds, and what its error line must say."""

    name: str
    build: Callable[[Kit], list[str | Path]]
    fragments: tuple[str, ...]


CASES: list[Case] = []


def case(name: str, *fragments: str) -> Callable[[Callable[[Kit], list[str | Path]]], None]:
    def register(build: Callable[[Kit], list[str | Path]]) -> None:
        CASES.append(Case(name, build, fragments))

    return register


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit of the config: ``path`` (dotted, list items by index) set to ``value``."""

    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[last] = value

    return edit


def _bad_table(kit: Kit, text: str | bytes) -> list[str | Path]:
    kit.file("bad_table.csv", text)
    edge = [{"source": "digit", "target": "attr", "kind": "table", "path": "bad_table.csv"}]
    return ["datasets", "show", kit.config(edit=_set("relatedness", edge))]


# ---- config files ---------------------------------------------------------------------------


@case("config-missing", "config file not found", "nope.yaml")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.dir / "nope.yaml"]


@case("config-is-a-folder", "is a folder, not a config file")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.dir / "images"]


@case("yaml-syntax", "y.yaml", "not valid YAML", "line 2, column")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("y.yaml", "name: x\n  sources: [1\n")]


@case("yaml-alias-bomb", "bomb.yaml", "more than 100,000 values", "alias bomb")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("bomb.yaml", _alias_bomb())]


@case("yaml-recursive-alias", "rec.yaml", "line 1", "recursive alias")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("rec.yaml", "name: &a [*a]\n")]


@case("yaml-duplicated-key", "dup.yaml", "line 3", "key 'name' is given twice", "line 1")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("dup.yaml", "name: a\nsources: []\nname: b\n")]


@case("yaml-python-tag", "tag.yaml", "line 1", "tags that build Python objects are refused")
def _(kit: Kit) -> list[str | Path]:
    text = "name: !!python/object/apply:os.system ['echo owned > owned.txt']\n"
    return ["config", "show", kit.file("tag.yaml", text)]


@case("config-not-utf8", "latin.yaml", "line 2, byte 21", "not UTF-8", "0xe9")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("latin.yaml", b"sources: []\nname: caf\xe9\n")]


@case("config-utf16", "u16.yaml", "UTF-16")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("u16.yaml", "name: x\n".encode("utf-16"))]


@case("config-too-large", "big.yaml", "more than the 1,048,576 bytes")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("big.yaml", "# padding\n" * 120_000)]


@case("config-nested-too-deeply", "deep.yaml", "nested too deeply")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("deep.yaml", "name: " + "[" * 2_000 + "\n")]


@case("config-control-character", "bell.yaml", "line 2", "#x0007")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("bell.yaml", "sources: []\nname: a\x07b\n")]


@case("config-top-level-list", "list.yaml", "the top level must be a mapping")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("list.yaml", "- name: x\n")]


@case("config-unknown-key", "c.yaml", "sources.0.colour", "Extra inputs are not permitted")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(colour="red")]


@case("config-wrong-type", "trainer.max_epochs", "valid integer")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(edit=_set("trainer.max_epochs", "many"))]


@case("config-no-sources", "sources", "Field required")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.file("empty.yaml", "name: x\n")]


@case("config-two-kinds", "sources.0", "give exactly one of 'builtin', 'manifest' or 'reader'")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(builtin="digits")]


@case("manifest-file-missing", "sources.0.manifest", "file not found", "gone.csv")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(manifest="gone.csv")]


@case("root-folder-missing", "sources.0.root", "folder not found")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(root="no_such_folder")]


@case("manifest-without-tasks", "sources.0.manifest", "needs the tasks declared")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(edit=_set("tasks", []))]


@case("duplicated-source-names", "sources.1.name", "duplicated source name 's'")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(edit=lambda d: d["sources"].append(d["sources"][0]))]


@case("edge-to-unknown-task", "relatedness.0.target", "no task 'colour'")
def _(kit: Kit) -> list[str | Path]:
    edge = [{"source": "digit", "target": "colour"}]
    return ["config", "show", kit.config(edit=_set("relatedness", edge))]


@case("edge-table-missing", "relatedness.0.path", "file not found")
def _(kit: Kit) -> list[str | Path]:
    edge = [{"source": "digit", "target": "attr", "kind": "table", "path": "nope.csv"}]
    return ["config", "show", kit.config(edit=_set("relatedness", edge))]


@case("held-out-with-val-fraction", "sources.0.val_fraction", "held out (split: test)")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(split="test", val_fraction=0.2)]


@case("held-out-with-regime", "sources.0.regime", "held out (split: test)")
def _(kit: Kit) -> list[str | Path]:
    regime = {"name": "scarce", "params": {"task": "digit", "fraction": 0.5}}
    return ["config", "show", kit.config(split="test", regime=regime)]


@case("allow-outside-root-on-builtin", "sources.0.allow_outside_root", "not to a built-in")
def _(kit: Kit) -> list[str | Path]:
    source = {"name": "d", "builtin": "digits", "allow_outside_root": True}
    return ["config", "show", kit.config(edit=_set("sources", [source]))]


# ---- overrides ------------------------------------------------------------------------------


@case("override-without-equals", "trainer.max_epochs", "must look like key.sub=value")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(), "-s", "trainer.max_epochs"]


@case("override-empty-key-part", "trainer..seed=1", "must look like key.sub=value")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(), "-s", "trainer..seed=1"]


@case("override-invalid-yaml", "trainer.max_epochs", "'[1' is not valid YAML")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(), "-s", "trainer.max_epochs=[1"]


@case("override-no-such-item", "sources.3", "no such list item")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(), "-s", "sources.3.name=x"]


@case("override-into-a-value", "trainer.max_epochs", "is not a section")
def _(kit: Kit) -> list[str | Path]:
    return ["config", "show", kit.config(), "-s", "trainer.max_epochs.x=1"]


# ---- manifests ------------------------------------------------------------------------------


@case("manifest-row-with-more-fields", "bad.csv, row 2 (line 3)", "7 field(s)", "has 6 columns")
def _(kit: Kit) -> list[str | Path]:
    text = MANIFEST.replace("1,images/1.png,train,b,0,1", "1,images/1.png,train,b,0,1,1")
    return ["datasets", "show", kit.manifest(text)]


@case("manifest-row-with-fewer-fields", "bad.csv, row 4 (line 5)", "4 field(s)")
def _(kit: Kit) -> list[str | Path]:
    text = MANIFEST.replace("3,images/3.png,train,a,,1", "3,images/3.png,train,a")
    return ["datasets", "show", kit.manifest(text)]


@case("manifest-semicolons", "bad.csv, line 1", "looks ';'-separated", "comma-separated")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace(",", ";"))]


@case("manifest-tabs", "bad.csv, line 1", "looks tab-separated")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace(",", "\t"))]


@case("manifest-no-input-column", "bad.csv", "no 'image' column", "rename 'path'")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace("id,image,", "id,path,"))]


@case("manifest-header-only", "bad.csv", "empty manifest (a header, no rows)")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.splitlines()[0] + "\n")]


@case("manifest-empty-file", "bad.csv", "empty manifest (an empty file")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest("")]


@case("manifest-not-utf8", "bad.csv", "line 3, byte", "not UTF-8", "0xff")
def _(kit: Kit) -> list[str | Path]:
    text = MANIFEST.encode().replace(b"images/1.png", b"images/\xff.png")
    return ["datasets", "show", kit.manifest(text)]


@case("manifest-nul-byte", "bad.csv: line 2, byte", "a NUL byte")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace("images/0", "ima\x00ges/0"))]


@case("manifest-path-escapes-root", "row 1 (line 2), column 'image'", "../../../../etc/passwd",
      "outside the root folder", "allow_outside_root")
def _(kit: Kit) -> list[str | Path]:
    text = MANIFEST.replace("images/0.png", "../../../../etc/passwd")
    return ["datasets", "show", kit.manifest(text)]


@case("manifest-absolute-path", "row 2 (line 3)", "'/etc/hostname' is outside the root")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace("images/1.png", "/etc/hostname"))]


@case("manifest-dotdot-inside-root-still-missing", "1 of 6 image file(s) are missing",
      "row 3: ")
def _(kit: Kit) -> list[str | Path]:
    text = MANIFEST.replace("images/2.png", "images/../images/nothing.png")
    return ["datasets", "show", kit.manifest(text)]


@case("manifest-missing-images", "column 'image'", "2 of 6 image file(s) are missing",
      "row 5: ")
def _(kit: Kit) -> list[str | Path]:
    (kit.dir / "images/4.png").unlink()
    (kit.dir / "images/5.png").unlink()
    return ["datasets", "show", kit.config()]


@case("manifest-unknown-class", "row 2 (line 3), column 'digit'", "'z'")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace("train,b,0,1", "train,z,0,1"))]


@case("manifest-binary-cell", "row 1 (line 2), column 'attr/x'", "expected 0 or 1")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace("train,a,1,0", "train,a,2,0"))]


@case("manifest-binary-cell-nan", "row 3 (line 4), column 'attr/y'", "expected 0 or 1 (or empty)",
      "got 'nan'")
def _(kit: Kit) -> list[str | Path]:
    row = "2,images/2.png,train,c,1,"
    return ["train", kit.manifest(MANIFEST.replace(row, row + "nan"))]


@case("manifest-binary-cell-NaN-in-parquet-text", "m.parquet, row 2, column 'attr/x'",
      "got 'NaN'")
def _(kit: Kit) -> list[str | Path]:
    frame = pd.read_csv(io.StringIO(MANIFEST), dtype=str, keep_default_na=False)
    frame.loc[1, "attr/x"] = "NaN"  # text, not a missing value
    frame.to_parquet(kit.dir / "m.parquet")
    return ["train", kit.config(manifest="m.parquet")]


@case("manifest-regression-cell-nan", "row 2 (line 3), column 'score/v'",
      "expected a finite number", "got 'NaN'")
def _(kit: Kit) -> list[str | Path]:
    kit.file("r.csv", "image,score/v\nimages/0.png,0.5\nimages/1.png,NaN\nimages/2.png,\n")

    def edit(data: dict[str, Any]) -> None:
        data["tasks"].append({"name": "score", "type": "regression", "targets": ["v"]})
        data["sources"].append({"name": "r", "manifest": "r.csv"})

    return ["train", kit.config(edit=edit)]


@case("manifest-duplicated-id", "column 'id'", "id '1' is duplicated", "rows 2, 3")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace("2,images/2", "1,images/2"))]


@case("manifest-typo-column", "'digt' (did you mean 'digit'?)")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace(",digit,", ",digt,"))]


@case("manifest-duplicated-column", "duplicated column(s): digit")
def _(kit: Kit) -> list[str | Path]:
    text = "\n".join(line + "," + line.split(",")[3] for line in MANIFEST.splitlines()) + "\n"
    return ["datasets", "show", kit.manifest(text)]


@case("manifest-bad-split", "row 1 (line 2), column 'split'", "'training'")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest(MANIFEST.replace("0.png,train", "0.png,training"))]


@case("manifest-image-and-index", "both an 'image' and an 'index' column")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.manifest("image,index,digit\na.png,0,a\n")]


@case("manifest-unknown-suffix", "m.txt", "unknown manifest suffix '.txt'")
def _(kit: Kit) -> list[str | Path]:
    kit.file("m.txt", MANIFEST)
    return ["datasets", "show", kit.config(manifest="m.txt")]


@case("manifest-parquet-garbage", "m.parquet", "cannot read the Parquet manifest")
def _(kit: Kit) -> list[str | Path]:
    kit.file("m.parquet", b"not parquet at all")
    return ["datasets", "show", kit.config(manifest="m.parquet")]


@case("held-out-source-with-a-split-column", "sources.0.split", "has its own split column")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.config(split="test")]


@case("test-manifest-also-a-training-source", "sources.1 (t): test row", "test.csv, row 1 (line 2)",
      "is also a training row of sources.2 (again)", "images/4.png", "(1 more such row(s))",
      "never also as a training source")
def _(kit: Kit) -> list[str | Path]:
    _train_and_test_files(kit)
    return ["train", kit.config(edit=_sources(
        {"name": "s", "manifest": "train.csv"},
        {"name": "t", "manifest": "test.csv", "split": "test"},
        {"name": "again", "manifest": "test.csv"},
    ))]


@case("split-manifest-again-with-val-fraction", "validation row", "m.csv, row",
      "is also a training row of sources.", "never also as a training source")
def _(kit: Kit) -> list[str | Path]:
    return ["train", kit.config(edit=_sources(
        {"name": "s", "manifest": "m.csv", "val_fraction": 0.5},
        {"name": "again", "manifest": "m.csv"},
    ))]


@case("split-manifest-again-with-its-test-split-training", "sources.0 (s): test row",
      "m.csv, row 5 (line 6)", "is also a training row of sources.1 (again): ")
def _(kit: Kit) -> list[str | Path]:
    return ["train", kit.config(edit=_sources(
        {"name": "s", "manifest": "m.csv"},
        {"name": "again", "manifest": "m.csv", "train_split": "test", "test_split": None},
    ))]


@case("manifest-image-in-two-splits", "sources.0 (s): test row", "bad.csv, row 5 (line 6)",
      "is also a training row of sources.0 (s): ", "bad.csv, row 1 (line 2)", "images/0.png",
      "went to different splits: keep one")
def _(kit: Kit) -> list[str | Path]:
    return ["train", kit.manifest(MANIFEST.replace("4,images/4.png,test", "4,images/0.png,test"))]


@case("index-manifest-row-in-two-splits", "sources.0 (s): test row", "x.npy, row 0")
def _(kit: Kit) -> list[str | Path]:
    np.save(kit.dir / "x.npy", np.zeros((3, 4), np.float32))
    kit.file("index.csv", "id,index,split,digit\na,0,train,a\nb,1,train,b\nc,0,test,a\n")
    return ["train", kit.config(manifest="index.csv", array="x.npy")]


def _train_and_test_files(kit: Kit) -> None:
    """``train.csv`` and ``test.csv``: the rows of MANIFEST's two splits, without the column."""
    header, *rows = MANIFEST.splitlines()
    header = header.replace(",split", "")
    for split in ("train", "test"):
        kept = [r.replace(f",{split},", ",") for r in rows if f",{split}," in r]
        kit.file(f"{split}.csv", "\n".join([header, *kept]) + "\n")


def _sources(*entries: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["sources"] = list(entries)

    return edit


@case("zero-shot-class-with-training-labels", "sources.0 (s)", "1 training row(s)",
      "class 'c' of task 'digit'", "zero-shot")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.config(edit=_set("tasks.0.zero_shot", ["c"]))]


@case("task-with-one-class", "task 'digit'", "classes")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", kit.config(edit=_set("tasks.0.classes", ["a"]))]


# ---- images and arrays ----------------------------------------------------------------------


@case("first-image-not-an-image", "row 1 (line 2), column 'image'", "cannot open")
def _(kit: Kit) -> list[str | Path]:
    kit.file("images/0.png", "this is text, not a PNG")
    return ["datasets", "show", kit.config()]


@case("image-path-is-a-folder", "1 of 6 image path(s) name no readable image file",
      "images/0.png (a folder, not an image file)", "row 1: ")
def _(kit: Kit) -> list[str | Path]:
    (kit.dir / "images/0.png").unlink()
    (kit.dir / "images/0.png").mkdir()
    return ["datasets", "show", kit.config()]


@case("image-path-is-a-named-pipe", "row 2: ", "images/1.png (a named pipe, not a regular file)")
def _(kit: Kit) -> list[str | Path]:
    (kit.dir / "images/1.png").unlink()
    os.mkfifo(kit.dir / "images/1.png")  # opened, it would wait for a writer forever
    return ["train", kit.config()]


@case("image-path-is-a-symlink-loop", "row 3: ", "images/2.png (a symbolic link loop)")
def _(kit: Kit) -> list[str | Path]:
    (kit.dir / "images/2.png").unlink()
    (kit.dir / "images/2.png").symlink_to(kit.dir / "images/2.png")
    return ["train", kit.config()]


@case("image-path-is-a-broken-symlink", "row 3: ", "images/2.png (a broken symbolic link)")
def _(kit: Kit) -> list[str | Path]:
    (kit.dir / "images/2.png").unlink()
    (kit.dir / "images/2.png").symlink_to(kit.dir / "gone.png")
    return ["train", kit.config()]


@case("image-empty-file", "1 of 6 image path(s)", "row 4: ",
      "images/3.png (an empty file, 0 bytes)")
def _(kit: Kit) -> list[str | Path]:
    kit.file("images/3.png", b"")
    return ["train", kit.config()]


@case("first-image-of-another-size", "m.csv, row 5 (line 6)",
      "images/4.png", "the image is 8x8, expected 16x16 (height x width) like", "images/0.png")
def _(kit: Kit) -> list[str | Path]:
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(kit.dir / "images/0.png")
    return ["train", kit.config()]


@case("sources-of-two-image-sizes", "sources.1 (big): inputs of shape (1, 16, 16)",
      "big/0.png", "sources.0 (s) has (1, 8, 8)", "input.image_size")
def _(kit: Kit) -> list[str | Path]:
    for i in range(6):
        kit.file(f"big/{i}.png", b"")
        Image.fromarray(np.full((16, 16), 9, np.uint8)).save(kit.dir / f"big/{i}.png")
    kit.file("big.csv", MANIFEST.replace("images/", "big/"))
    return ["train", kit.config(edit=_add_source({"name": "big", "manifest": "big.csv"}))]


def _add_source(entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["sources"].append(entry)

    return edit


def _index_source(kit: Kit, array: Path, index: str = "0\n1\n2\n") -> list[str | Path]:
    kit.file("index.csv", "index,digit\n" + "".join(f"{i},a\n" for i in index.split()))
    return ["datasets", "show", kit.config(manifest="index.csv", array=array.name)]


def _npy(kit: Kit, name: str, array: np.ndarray) -> Path:
    path = kit.dir / name
    np.save(path, array, allow_pickle=True)
    return path


@case("npy-with-python-objects", "objects.npy", "holds Python objects", "never unpickles")
def _(kit: Kit) -> list[str | Path]:
    return _index_source(kit, _npy(kit, "objects.npy", np.array([{"a": 1}] * 3, dtype=object)))


@case("npy-that-is-a-pickle", "pickled.npy", "not a .npy array file")
def _(kit: Kit) -> list[str | Path]:
    path = kit.file("pickled.npy", pickle.dumps([1, 2, 3]))
    return _index_source(kit, path)


@case("npy-truncated", "short.npy", "cannot read the array")
def _(kit: Kit) -> list[str | Path]:
    path = _npy(kit, "short.npy", np.zeros((3, 16), np.float32))
    path.write_bytes(path.read_bytes()[:-40])
    return _index_source(kit, path)


@case("npy-wrong-dtype", "expected a float or uint8 array", "int64")
def _(kit: Kit) -> list[str | Path]:
    return _index_source(kit, _npy(kit, "ints.npy", np.zeros((3, 4), np.int64)))


@case("npy-wrong-shape", "expected an array of shape (N, C, H, W) or (N, D)")
def _(kit: Kit) -> list[str | Path]:
    return _index_source(kit, _npy(kit, "three_d.npy", np.zeros((3, 4, 4), np.float32)))


@case("npy-index-out-of-range", "index.csv, row 3 (line 4), column 'index'",
      "outside the array's 3 rows")
def _(kit: Kit) -> list[str | Path]:
    return _index_source(kit, _npy(kit, "x.npy", np.zeros((3, 4), np.float32)), "0 1 7")


@case("npy-not-npy-suffix", "x.npz", "expected a .npy array file")
def _(kit: Kit) -> list[str | Path]:
    path = kit.file("x.npz", b"PK")
    return _index_source(kit, path)


# ---- relatedness tables ---------------------------------------------------------------------


@case("table-not-utf8", "bad_table.csv", "line 3, byte", "not UTF-8")
def _(kit: Kit) -> list[str | Path]:
    return _bad_table(kit, TABLE.encode().replace(b"b,0.2", b"\xe9,0.2"))


@case("table-not-a-number", "bad_table.csv, line 2, column 'y'", "expected a probability",
      "'high'")
def _(kit: Kit) -> list[str | Path]:
    return _bad_table(kit, TABLE.replace("0.9,0.1", "0.9,high"))


@case("table-wrong-row-names", "bad_table.csv", "rows must be exactly the names of task 'digit'",
      "unknown names ['q']")
def _(kit: Kit) -> list[str | Path]:
    return _bad_table(kit, TABLE.replace("c,0.5", "q,0.5"))


@case("table-ragged-row", "bad_table.csv, line 3", "expected 3 fields, got 2")
def _(kit: Kit) -> list[str | Path]:
    return _bad_table(kit, TABLE.replace("b,0.2,0.8", "b,0.2"))


@case("table-empty", "bad_table.csv", "empty relatedness table")
def _(kit: Kit) -> list[str | Path]:
    return _bad_table(kit, "")


@case("relatedness-show-not-utf8", "r.csv", "line 2, byte", "not UTF-8")
def _(kit: Kit) -> list[str | Path]:
    return ["relatedness", "show", kit.file("r.csv", b"a,u\n\xff,0.5\n")]


@case("relatedness-show-not-a-table", "r.csv", "not a relatedness table")
def _(kit: Kit) -> list[str | Path]:
    return ["relatedness", "show", kit.file("r.csv", "a,u\nx,high\n")]


# ---- backbones and the trainer (caught before any training step) ----------------------------


@case("backbone-factory-rejects-arguments", "backbone 'json:dumps'", "not a backbone factory",
      "standard library")
def _(kit: Kit) -> list[str | Path]:
    return ["train", kit.config(edit=_set("backbone.name", "json:dumps"))]


@case("backbone-module-missing", "backbone 'no_such_pkg.models:net'", "cannot import module")
def _(kit: Kit) -> list[str | Path]:
    return ["train", kit.config(edit=_set("backbone.name", "no_such_pkg.models:net"))]


@case("backbone-empty-module", "unknown backbone ':net'", "package.module:function")
def _(kit: Kit) -> list[str | Path]:
    return ["train", kit.config(edit=_set("backbone.name", ":net"))]


@case("backbone-not-callable", "backbone 'json:__doc__'", "not a backbone factory")
def _(kit: Kit) -> list[str | Path]:
    return ["train", kit.config(edit=_set("backbone.name", "json:__doc__"))]


@case("unknown-monitor", "trainer.monitor", "'val/digit/acc' is not a logged metric",
      "did you mean 'val/digit/accuracy'?", "val/loss", "val/attr/f1/<label>")
def _(kit: Kit) -> list[str | Path]:
    return ["train", kit.config(edit=_set("trainer.monitor", "val/digit/acc"))]


# ---- command-line arguments and outputs -----------------------------------------------------


@case("train-out-is-a-file", "taken.txt (--out) is a file; give a folder")
def _(kit: Kit) -> list[str | Path]:
    return ["train", kit.config(), "-o", kit.file("taken.txt", "mine")]


@case("study-output-dir-is-a-file", "taken.txt (output.dir) is a file")
def _(kit: Kit) -> list[str | Path]:
    kit.file("taken.txt", "mine")
    return ["study", kit.config(edit=_set("output.dir", str(kit.dir / "taken.txt")))]


@case("demo-out-is-a-file", "taken.txt (--out) is a file")
def _(kit: Kit) -> list[str | Path]:
    return ["demo", "-o", kit.file("taken.txt", "mine")]


@case("evaluate-output-exists", "metrics.json exists; pass --overwrite")
def _(kit: Kit) -> list[str | Path]:
    return ["evaluate", kit.dir, "-o", kit.file("metrics.json", "{}")]


@case("predict-output-exists", "p.csv exists; pass --overwrite")
def _(kit: Kit) -> list[str | Path]:
    return ["predict", kit.dir, kit.dir / "m.csv", "-o", kit.file("p.csv", "mine")]


@case("predict-output-is-a-folder", "(--output) is a folder; give a file path")
def _(kit: Kit) -> list[str | Path]:
    return ["predict", kit.dir, kit.dir / "m.csv", "-o", kit.dir / "images", "--overwrite"]


@case("predict-output-under-a-file", "m.csv is a file, not a folder")
def _(kit: Kit) -> list[str | Path]:
    return ["predict", kit.dir, kit.dir / "m.csv", "-o", kit.dir / "m.csv" / "p.csv"]


@case("relatedness-estimate-output-exists", "r.csv exists; pass --overwrite")
def _(kit: Kit) -> list[str | Path]:
    output = kit.file("r.csv", "mine")
    return ["relatedness", "estimate", kit.config(), "-o", output, "--source", "digit",
            "--target", "attr"]


@case("relatedness-estimate-one-side", "--source, --target: give both, or neither")
def _(kit: Kit) -> list[str | Path]:
    return ["relatedness", "estimate", kit.config(), "-o", kit.dir / "r.csv", "--source", "digit"]


@case("relatedness-estimate-negative-alpha", "--alpha: expected a number >= 0")
def _(kit: Kit) -> list[str | Path]:
    return ["relatedness", "estimate", kit.config(), "-o", kit.dir / "r.csv", "--source",
            "digit", "--target", "attr", "--alpha", "-1"]


@case("relatedness-show-image-exists", "table.png exists; pass --overwrite")
def _(kit: Kit) -> list[str | Path]:
    kit.file("table.png", b"mine")
    return ["relatedness", "show", kit.dir / "table.csv"]


@case("export-output-exists", "model.onnx exists; pass --overwrite")
def _(kit: Kit) -> list[str | Path]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    output = kit.file("model.onnx", b"mine")
    return ["export", kit.file("last.ckpt", b"x"), "-o", output]


@case("datasets-export-into-a-used-folder", "images already holds files", "--overwrite")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "export", "digits", kit.dir / "images", "--limit", "2"]


@case("datasets-export-unknown", "unknown built-in dataset 'nope'")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "export", "nope", kit.dir / "out"]


@case("datasets-show-unknown", "nope: neither a built-in dataset")
def _(kit: Kit) -> list[str | Path]:
    return ["datasets", "show", "nope"]


@case("evaluate-no-run", "no such checkpoint or run folder")
def _(kit: Kit) -> list[str | Path]:
    return ["evaluate", kit.dir / "nothing"]


@case("predict-not-a-checkpoint", "c.yaml", "not a dmtl checkpoint")
def _(kit: Kit) -> list[str | Path]:
    return ["predict", kit.config(), kit.dir / "images", "-o", kit.dir / "p.csv"]


# ---- the checks -----------------------------------------------------------------------------


def _alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    """No line wrapping in rich output, so that messages and paths can be matched whole."""
    widths = (console.width, err_console.width)
    console.width = err_console.width = 1000
    yield
    console.width, err_console.width = widths


def _check_one_error_line(output: str, fragments: tuple[str, ...]) -> str:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def test_the_corpus_is_large_and_its_names_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) >= 60
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_error_line(
    bad: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anything written by mistake lands here, and is seen
    kit = Kit(tmp_path)
    args = [str(a) for a in bad.build(kit)]
    written = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    _check_one_error_line(result.output, bad.fragments)
    # no file was replaced or added by the refused command (the case's own files aside)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == written, sorted(set(after) ^ set(written))
    assert not (tmp_path / "owned.txt").exists()


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="80", OMP_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "DMTL_DEBUG"):
        env.pop(key, None)
    return env


REAL_PROCESS = [
    "yaml-alias-bomb", "config-not-utf8", "held-out-with-regime", "image-path-is-a-named-pipe",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_PROCESS)
def test_a_real_process_prints_one_line_on_stderr(name: str, tmp_path: Path) -> None:
    """In a real process with an 80-column stderr: nothing on stdout, one unbroken line."""
    bad = next(c for c in CASES if c.name == name)
    args = [str(a) for a in bad.build(Kit(tmp_path))]
    done = subprocess.run(
        [sys.executable, "-m", "dmtl", *args], capture_output=True, text=True, timeout=300,
        env=_subprocess_env(), cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    line = _check_one_error_line(done.stderr, bad.fragments)
    assert len(line) > 80  # a long message is one line, not folded at the width
    assert done.stderr.strip().splitlines()[-1] == line


# ---- datasets check -------------------------------------------------------------------------


def _invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def test_datasets_check_decodes_every_image_and_lists_the_unreadable(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    kit.file("images/2.png", (tmp_path / "images/2.png").read_bytes()[:50])  # truncated
    kit.file("images/4.png", b"GIF89a not really")
    code, text = _invoke("datasets", "check", kit.config())
    assert code == 1
    manifest = tmp_path / "m.csv"
    assert f"unreadable: {tmp_path / 'images/2.png'} ({manifest}, row 3 (line 4)):" in text
    assert f"unreadable: {tmp_path / 'images/4.png'} ({manifest}, row 5 (line 6)):" in text
    assert "2 of 6 images do not decode" in text
    assert "2 unreadable image(s)" in text
    assert "all sources readable" not in text
    # skip_corrupt: left out when loading, counted, and the check passes
    with pytest.warns(UserWarning, match="skipped 2 corrupt image"):
        code, text = _invoke("datasets", "check", kit.config(skip_corrupt=True))
    assert code == 0, text
    assert "corrupt images skipped (skip_corrupt): 2" in text


def test_datasets_check_says_when_a_source_without_a_split_column_trains(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    header, *rows = MANIFEST.splitlines()
    header = header.replace(",split", "")
    train = [r.replace(",train", "") for r in rows if ",train," in r]
    test = [r.replace(",test", "") for r in rows if ",test," in r]
    kit.file("train.csv", "\n".join([header, *train]) + "\n")
    kit.file("test.csv", "\n".join([header, *test]) + "\n")

    def two_sources(split: str | None) -> Callable[[dict[str, Any]], None]:
        def edit(data: dict[str, Any]) -> None:
            test = {"name": "t", "manifest": "test.csv"}
            if split is not None:
                test["split"] = split
            data["sources"] = [{"name": "s", "manifest": "train.csv"}, test]

        return edit

    # the natural first try: the test manifest as a second source; all of it trains
    code, text = _invoke("datasets", "check", kit.config(edit=two_sources(None)))
    assert code == 0
    assert "source 't' has no split column: all its 2 rows train" in text
    assert "set split: test (or val) on the source" in text
    assert "warning: no validation and no test data" in text
    # declared a test set: no line for it, no warning, and the run has test data
    code, text = _invoke("datasets", "check", kit.config(edit=two_sources("test")))
    assert code == 0
    assert "source 't' has no split column" not in text
    assert "source 's' has no split column: all its 4 rows train" in text
    assert "warning" not in text
    from dmtl.build.data import build_experiment
    from dmtl.config import load_config

    experiment = build_experiment(load_config(kit.dir / "c.yaml"))
    assert [s.name for s in experiment.test] == ["t[test]"]
    assert len(experiment.test[0]) == 2
    assert sum(len(s) for s in experiment.train) == 4


def test_a_task_without_training_labels_is_a_warning(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    text = MANIFEST.replace(",attr/x,attr/y", "").splitlines()
    kit.file("m.csv", "\n".join(",".join(r.split(",")[:4]) for r in text) + "\n")
    code, out = _invoke("datasets", "check", kit.config())
    assert code == 0, out
    assert ("warning: task 'attr' has no labelled training sample; no relatedness edge reaches "
            "it either") in out
    edge = [{"source": "digit", "target": "attr", "kind": "table", "path": "table.csv"}]
    code, out = _invoke("datasets", "check", kit.config(edit=_set("relatedness", edge)))
    assert code == 0, out
    assert "task 'attr' has no labelled training sample; it learns only through its" in out


def test_paths_stay_under_the_root_unless_the_source_opts_out(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "images/1.png").rename(elsewhere / "1.png")
    kit.file("data/m.csv", MANIFEST.replace("images/1.png", "../elsewhere/1.png"))
    (tmp_path / "data/images").symlink_to(tmp_path / "images")  # the root links to its images
    code, out = _invoke("datasets", "show", kit.config(manifest="data/m.csv"))
    assert code == 2
    assert "row 2 (line 3), column 'image': '../elsewhere/1.png' is outside the root" in out
    # opted out: read as written; the symlink inside the root is followed
    code, out = _invoke(
        "datasets", "check", kit.config(manifest="data/m.csv", allow_outside_root=True)
    )
    assert code == 0, out
    assert "all 6 images decode" in out
    # a '..' that stays under the root is no escape
    (tmp_path / "data/sub").mkdir()
    kit.file("data/m.csv", MANIFEST.replace("images/1.png", "sub/../images/0.png"))
    code, out = _invoke("datasets", "check", kit.config(manifest="data/m.csv"))
    assert code == 0, out


# ---- the bounded YAML loader ----------------------------------------------------------------


def test_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    from dmtl.config import load_config

    path = tmp_path / "anchors.yaml"
    path.write_text(
        "defaults: &defaults {max_epochs: 2, batch_size: 8}\n"
        "sources:\n  - {name: digits, builtin: digits}\n"
        "trainer:\n  <<: *defaults\n  max_epochs: 3\n"  # a merge key is no duplicated key
    )
    with pytest.raises(ConfigError, match="defaults: Extra inputs") as error:
        load_config(path)  # the merge went through: only the anchor's own key is unknown
    assert len(error.value.problems) == 1
    path.write_text(
        "sources:\n  - &digits {name: digits, builtin: digits}\n"
        "trainer: &trainer {max_epochs: 2, batch_size: 8}\n"
        "study: {seeds: 1}\n"
    )
    config = load_config(path, ["trainer.max_epochs=3"])
    assert (config.trainer.max_epochs, config.trainer.batch_size) == (3, 8)


def test_the_expansion_limit_counts_every_use_of_an_alias() -> None:
    from dmtl.config import BoundedLoader, parse_yaml

    class Small(BoundedLoader):
        max_values = 13

    # the root, key a, [1, 2] (3 values), key b, [*x, *x] (1 + 3 + 3): 13 values
    fits = "a: &x [1, 2]\nb: [*x, *x]\n"
    assert yaml.load(fits, Loader=Small) == {"a": [1, 2], "b": [[1, 2], [1, 2]]}
    with pytest.raises(yaml.YAMLError, match="more than 13 values"):
        yaml.load(fits + "c: 1\n", Loader=Small)
    merged = parse_yaml("base: &b {p: 1, q: 2}\nuse:\n  <<: *b\n  p: 3\n")
    assert merged["use"] == {"p": 3, "q": 2}  # a merge key and an explicit key: no duplicate


def test_unreadable_images_reports_progress_and_rows(tmp_path: Path) -> None:
    from dmtl.build.data import declared_tasks, load_source
    from dmtl.config import load_config
    from dmtl.data.sources import unreadable_images

    kit = Kit(tmp_path)
    kit.file("images/3.png", b"\x89PNG\r\n\x1a\n broken")
    config = load_config(kit.config())
    item = load_source(0, config.sources[0], declared_tasks(config))
    ticks: list[int] = []
    found = unreadable_images(item.source, ticks.append)
    assert sum(ticks) == 6
    assert [(Path(f.path).name, f.where) for f in found] == [
        ("3.png", f"{tmp_path / 'm.csv'}, row 4 (line 5)")
    ]
    # a subset keeps naming each image's own row
    subset = item.source.subset([3, 0])
    assert [f.where for f in unreadable_images(subset)] == [f"{tmp_path / 'm.csv'}, row 4 (line 5)"]


# ---- images of another size, folders and pipes (datasets check, then train) ------------------


@pytest.mark.slow
def test_an_image_of_another_size_is_listed_by_check_and_named_by_train(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "images/3.png")
    code, text = _invoke("datasets", "check", kit.config())
    assert code == 1, text
    assert "all 6 images decode" in text  # it decodes: its size is the problem
    assert (f"other size: {tmp_path / 'images/3.png'} ({tmp_path / 'm.csv'}, row 4 (line 5)): "
            "16x16, expected 8x8 (height x width)") in text
    assert "1 of 6 images are not 8x8, the size of the others" in text
    assert "set sources.0.input.image_size" in text
    assert "1 image(s) of another size" in text
    # training stops at the batch holding it, with one line naming it (not a failed stack)
    result = CliRunner().invoke(app, ["train", str(kit.config())])
    assert result.exit_code == 2, result.output
    line = _check_one_error_line(
        result.output, (f"{tmp_path / 'images/3.png'} ({tmp_path / 'm.csv'}, row 4 (line 5))",
                        "the image is 16x16, expected 8x8 (height x width)", "input.image_size"),
    )
    assert "stack expects" not in line
    # resized to one size: differing sizes are fine for both
    resized = kit.config("resized.yaml", edit=_set("sources.0.input", {"image_size": 8}))
    code, text = _invoke("datasets", "check", resized)
    assert code == 0, text
    assert "other size" not in text
    code, text = _invoke("train", resized, "--overwrite")
    assert code == 0, text


def test_datasets_check_names_folders_pipes_and_empty_files(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    (tmp_path / "images/0.png").unlink()
    (tmp_path / "images/0.png").mkdir()
    (tmp_path / "images/1.png").unlink()
    os.mkfifo(tmp_path / "images/1.png")
    code, text = _invoke("datasets", "check", kit.config())
    assert code == 1
    assert "missing" not in text
    assert f"row 1: {tmp_path / 'images/0.png'} (a folder, not an image file)" in text
    assert f"row 2: {tmp_path / 'images/1.png'} (a named pipe, not a regular file)" in text
    # skip_corrupt leaves an empty (corrupt) file out, but never a pipe
    (tmp_path / "images/0.png").rmdir()
    kit.file("images/0.png", b"")
    code, text = _invoke("datasets", "check", kit.config(skip_corrupt=True))
    assert code == 1
    assert "(a named pipe, not a regular file)" in text
    (tmp_path / "images/1.png").unlink()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images/1.png")
    with pytest.warns(UserWarning, match="skipped 1 corrupt image"):
        code, text = _invoke("datasets", "check", kit.config(skip_corrupt=True))
    assert code == 0, text
    assert "corrupt images skipped (skip_corrupt): 1" in text


def test_a_row_in_two_roles_is_refused_by_check_and_one_role_twice_is_fine(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    _train_and_test_files(kit)
    leak = kit.config(edit=_sources(
        {"name": "s", "manifest": "train.csv"},
        {"name": "t", "manifest": "test.csv", "split": "test"},
        {"name": "again", "manifest": "test.csv"},
    ))
    code, text = _invoke("datasets", "check", leak)
    assert code == 1
    assert "sources.1 (t): test row" in text and "training row of sources.2 (again)" in text
    # the same image in two training rows (say, labels of two datasets) is no leak
    kit.file("twice.csv", MANIFEST.replace("1,images/1.png,train", "1,images/0.png,train"))
    code, text = _invoke("datasets", "check", kit.config(manifest="twice.csv"))
    assert code == 0, text
