"""Grad-CAM heat maps of a classifier (e.g. the classify-and-localise model), one or more checkpoints side by side.

For each image it writes DIR/<image name>_gradcam.png: the input, then one heat-map overlay per
checkpoint (red = the regions that raise the score of the target class most), captioned with the
predicted class. Uses the `grad-cam` package (pytorch_grad_cam); the work is :mod:`projects.analysis.gradcam`'s.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.analysis.gradcam import METHODS, load_models, run_gradcam  # noqa: E402
from projects.common.cli import CfgOptionsAction  # noqa: E402

EPILOG = """examples:
  # one model
  python tools/analysis/gradcam.py \\
      configs/localization/clsloc_efficientnet-b1_simclr-in1k_1xb32-50e_voc0712-100pct.py \\
      work_dirs/clsloc_run/best.pth --img cat.jpg --out-dir work_dirs/gradcam
  # SimCLR-initialised vs ImageNet-supervised model, side by side
  python tools/analysis/gradcam.py CONFIG_A CKPT_A --config2 CONFIG_B --checkpoint2 CKPT_B \\
      --img img1.jpg img2.jpg --out-dir work_dirs/gradcam_compare --target-class dog --names simclr lite0
  # three models (SimCLR, random, ImageNet), as tools/run_localization_job.py draws them
  python tools/analysis/gradcam.py CONFIG_A CKPT_A --compare CONFIG_B CKPT_B --compare CONFIG_C CKPT_C \\
      --img img1.jpg --out-dir work_dirs/gradcam3 --names simclr random imagenet

CONFIG must build a model with a classification head (ClsLocModel or an mmpretrain ImageClassifier);
images are prepared with the config's test pipeline (resize) and data preprocessor (normalisation).
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw Grad-CAM heat maps (which image regions drive the class score) for one model, '
                    'or for two models side by side.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config of the (first) model, e.g. a configs/localization/ file')
    parser.add_argument('checkpoint', help='trained checkpoint (.pth) of the first model')
    parser.add_argument('--config2', help='config of a second model to compare with (optional)')
    parser.add_argument('--checkpoint2', help='checkpoint of the second model (needed with --config2)')
    parser.add_argument('--compare', nargs=2, action='append', default=[], metavar=('CONFIG', 'CHECKPOINT'),
                        help='one more model to draw beside the others (repeatable; after --config2 if given)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={},
                        help='key=value overrides applied to every config (e.g. the class count of your data)')
    parser.add_argument('--img', nargs='+', required=True, metavar='IMAGE', help='one or more image files')
    parser.add_argument('--out-dir', required=True, help='folder for the <image>_gradcam.png files (created)')
    parser.add_argument('--target-layer', default=None,
                        help='module whose activations are explained, as a dotted path with optional '
                             'indices, e.g. "backbone.layers.-1" (default: the last convolutional stage of the '
                             'backbone)')
    parser.add_argument('--target-layer2', default=None, help='--target-layer for the second and further models '
                        '(default: same rule as for the first)')
    parser.add_argument('--target-class', default=None,
                        help='class to explain, by name (e.g. "dog") or index (default: each model\'s own '
                             'top-1 prediction)')
    parser.add_argument('--method', default='gradcam', choices=sorted(METHODS),
                        help='CAM variant (default: gradcam)')
    parser.add_argument('--names', nargs='+', default=None, metavar='NAME',
                        help='short captions for the models, e.g. --names simclr supervised '
                             '(default: "model 1", "model 2")')
    parser.add_argument('--display-size', type=int, default=256, help='side of each panel in pixels (default 256)')
    parser.add_argument('--save-raw', action='store_true',
                        help='also save each heat map as a float .npy array (values 0..1) next to the image')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda if available)')
    args = parser.parse_args(argv)
    if (args.config2 is None) != (args.checkpoint2 is None):
        parser.error('--config2 and --checkpoint2 go together')
    num_models = (2 if args.config2 else 1) + len(args.compare)
    if args.names is not None and len(args.names) != num_models:
        parser.error(f'--names needs {num_models} name(s), one per model, got {len(args.names)}')
    return args


def main(argv=None):
    args = parse_args(argv)
    further = ([(args.config2, args.checkpoint2)] if args.config2 else []) + args.compare
    specs = [(args.config, args.checkpoint, args.target_layer)] + [(c, k, args.target_layer2) for c, k in further]
    models = load_models(specs, args.names, args.device, args.cfg_options)
    return run_gradcam(models, args.img, args.out_dir, args.target_class, args.method, args.display_size,
                       args.save_raw)

if __name__ == '__main__':
    main()
