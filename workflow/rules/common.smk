# Config validation and the few helpers the rules share.
import hashlib
import json
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml", set_default=True)

if config["stories"]["source"] == "bigtom" and not config.get("bigtom_csv"):
    raise ValueError(
        "config key 'bigtom_csv' is required when stories.source is 'bigtom': "
        "pass it with --config bigtom_csv=PATH/bigtom.csv"
    )
if config.get("bigtom_csv") and not Path(config["bigtom_csv"]).is_file():
    raise ValueError(f"config key 'bigtom_csv': no such file: {config['bigtom_csv']}")

ENV = "../envs/tomlab.yaml"  # relative to the rule files
SITES = config["activations"]["sites"]
REPORT_DIR = Path(workflow.basedir) / "report"
REPORT_SOURCES = sorted(
    str(p) for p in REPORT_DIR.iterdir() if p.is_file() and not p.name.startswith(".")
)
CONFIG_JSON = json.dumps(config, sort_keys=True)
CONFIG_HASH = hashlib.sha256(CONFIG_JSON.encode()).hexdigest()[:12]
MODEL_JSON = json.dumps(config["model"], sort_keys=True)
GPUS = config["model"]["gpu"]
