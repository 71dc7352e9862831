"""dmtl's command line (typer + rich): ``dmtl --help``."""

from dmtl.cli.affinity_cmd import affinity
from dmtl.cli.app import app, main
from dmtl.cli.config_cmd import config_app
from dmtl.cli.datasets import datasets_app
from dmtl.cli.export_cmd import export
from dmtl.cli.predict_cmd import predict
from dmtl.cli.relatedness import relatedness_app

app.add_typer(relatedness_app, name="relatedness")
app.add_typer(datasets_app, name="datasets")
app.add_typer(config_app, name="config")
app.command("export")(export)
app.command("predict")(predict)
app.command("affinity")(affinity)

__all__ = ["app", "main"]
