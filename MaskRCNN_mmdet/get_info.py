"""Guide step "精度验证": `python3 get_info.py jpg data/coco/val2017/ val2017_jpg.info` lists the images
with their sizes (`index path width height`), the image list the postprocess scores."""
from common.cli import script_entry
from common.info_cli import main, parse_args

if __name__ == "__main__":
    script_entry(main, parse_args)
