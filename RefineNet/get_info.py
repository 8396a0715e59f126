"""Guide step 4.3: the legacy benchmark tool's dataset list, e.g.
`python3 get_info.py bin prepare_dataset ./refinenet_prep_bin.info 500 500`."""
from common.cli import script_entry
from common.info_cli import main, parse_args

if __name__ == "__main__":
    script_entry(main, parse_args)
