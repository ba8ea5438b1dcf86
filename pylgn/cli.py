"""The ``pylgn`` command: train, eval, predict, info, export.

User mistakes (unknown dataset, missing file, bad flag value, a ValueError/TypeError from the
library) print one line ``pylgn: error: ...`` to stderr and return exit status 2.
"""
import argparse
import json
import os
import sys
import time

#: The dataset when --dataset is not given. The other model/data/optimizer flags default to the
#: recipe for the data's shape and size (pylgn.recipes); on --resume they come from the checkpoint.
DEFAULT_DATASET = "digits"

LIMITS = dict(thresholds=(1, 255), layers=(1, 10 ** 4), width=(1, 10 ** 9), last_width=(1, 10 ** 9),
              arity=(1, 6),
              tau=(1e-6, 1e9), lr=(1e-12, 1e3), batch_size=(1, 10 ** 7), accumulate=(1, 10 ** 6),
              weight_decay=(0.0, 1e3),
              seed=(0, 2 ** 32 - 1), warmup=(0, 10 ** 9), steps=(1, 10 ** 10), gumbel=(0.0, 1e3))


class UsageError(Exception):
    """A user mistake: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main(argv=None):
    """Entry point of the console script; returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["train"] + list(argv or []))
        check_outputs(args)
        return args.run(args) or 0
    except MemoryError:
        print("pylgn: error: out of memory (reduce --width, --layers or --batch-size)",
              file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"pylgn: error: {e}", file=sys.stderr)
        return 1
    except (UsageError, ValueError, TypeError, OSError) as e:
        msg = str(e) if not isinstance(e, FileNotFoundError) or not e.filename else \
            f"{e.filename}: {e.strerror}"
        print(f"pylgn: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pylgn: interrupted", file=sys.stderr)
        return 130


# outputs against inputs --------------------------------------------------------------------------

def _train_out(args):
    """The output folder of ``pylgn train``: --out, else the --resume folder, else runs/<dataset>."""
    if args.out is not None:
        return args.out
    if args.resume:
        return os.path.dirname(args.resume) or "."
    return os.path.join("runs", os.path.splitext(os.path.basename(args.dataset or
                                                                  DEFAULT_DATASET))[0])


#: The files ``pylgn train`` writes into its output folder.
TRAIN_FILES = ("checkpoint.h5", "best.h5", "history.json")


def _io(args):
    """(inputs, outputs) of a command: [(flag, path)] of the files it reads and writes."""
    if args.command == "export":
        return [("checkpoint", args.checkpoint)], [("-o", args.output)]
    if args.command == "predict":
        return ([("checkpoint", args.checkpoint), ("INPUT", args.input)],
                [("-o", args.output)] if args.output is not None else [])
    if args.command == "train":
        out = _train_out(args)
        inputs = [("--resume", args.resume), ("--dataset", args.dataset)]
        return ([(k, v) for k, v in inputs if v and os.path.isfile(v)],
                [("--out", out)] + [("--out", os.path.join(out, f)) for f in TRAIN_FILES])
    return [], []


def _same(a, b):
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)         # hard links
    except OSError:
        return False


def check_outputs(args):
    """Every output path is resolved against the inputs before anything is written: an empty
    path, an output that is an input (a link to it included), a file where a folder is
    expected and vice versa, and ``train`` onto a folder holding another run's checkpoint
    (unless it is the --resume checkpoint, or --overwrite) are refused."""
    inputs, outputs = _io(args)
    for flag, path in outputs:
        if not path or not path.strip():
            raise UsageError(f"{flag}: expected a path, got {path!r}")
        for in_flag, src in inputs:
            resumed = in_flag == "--resume" and os.path.basename(path) == "checkpoint.h5"
            if _same(path, src) and not resumed:        # a resumed run continues its own file
                raise UsageError(f"{flag} {path}: is the input {in_flag} {src}; refusing to "
                                 f"overwrite it (nothing was written)")
    if args.command in ("export", "predict") and args.output is not None:
        if os.path.isdir(args.output) or args.output.endswith(("/", os.sep)):
            raise UsageError(f"-o {args.output}: is a folder; expected a file path")
    elif args.command == "train":
        _check_train_out(args, _train_out(args))


def _check_train_out(args, out):
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: is a file; expected a folder")
    for name in TRAIN_FILES:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            raise UsageError(f"--out {out}: {path} is a folder; expected a file or nothing")
    ckpt = os.path.join(out, "checkpoint.h5")
    if os.path.exists(ckpt) and not args.overwrite and not (args.resume and
                                                              _same(args.resume, ckpt)):
        raise UsageError(f"--out {out}: holds the checkpoint of another run ({ckpt}); continue "
                         f"it with --resume {ckpt}, pick another --out, or pass --overwrite to "
                         f"replace it")


# parser ----------------------------------------------------------------------------------------

def _recipes_help():
    from .recipes import BASE, BY_ARITY, CROP_KEEP, LEVEL_CHOICES, LEVELS_KEEP, RECIPES
    lines = ["Defaults come from the recipe for the data's shape (pylgn.recipes; flags override;",
             "'read' = read from the training data before training, printed and kept in the",
             "checkpoint, `pylgn info` shows it):"]
    for r in RECIPES:
        diff = {k: v for k, v in {**BASE, **r.settings}.items() if r.settings.get(k, None) is not None}
        at = f" (at {r.tau_at:g} gates per class)" if r.tau_at else ""
        lines.append(f"  {r.name} ({r.when}): " + (", ".join(
            f"{k}={v}{at if k == 'tau' else ''}" for k, v in diff.items()) or "the base settings"))
        for least, extra, extra_at in BY_ARITY.get(r.name, ()):
            lines.append(f"    with --arity >= {least}: "
                         + ", ".join(f"{k}={v}" for k, v in extra.items())
                         + f" (tau at {extra_at:g} gates per class)")
    base = ", ".join(f"{k}={v}" for k, v in BASE.items())
    return "\n".join(lines + [
        f"  base: {base}", "Rules:",
        f"  crop: the smallest centred square holding >= {CROP_KEEP:.0%} of the label-explained",
        "    pixel variance (sum over classes of share x (class mean - mean)^2); none if the",
        "    whole frame is needed (MNIST: 20; digits that fill the frame: none)",
        f"  thresholds: the fewest of {', '.join(map(str, LEVEL_CHOICES))} whose uniform "
        f"thermometer keeps >= {LEVELS_KEEP:.0%} of the",
        "    label-explained pixel variance inside the crop (MNIST's strokes: 2; classes told",
        "    apart by shades of grey: more)",
        "  width: rounded up to a multiple of the classes",
        "  tau: the recipe's tau x sqrt(gates per class / the gates per class it holds at)",
        "  tables: thresholds = rows per class / 25 in [2, 8]; width = max(200 x classes,",
        "    2 x input bits); 3 layers; tau = sqrt(gates per class); batch min(100, rows / 4);",
        "    steps: 300 epochs in [2000, 20000]; lr 0.02 cosine"])


def _build_parser():
    from .estimators import ESTIMATORS
    from .choice import CHOICES
    from .init import INITS
    from .layers import LAYER_CONNECTIONS
    from .optim import SCHEDULES
    p = _Parser(prog="pylgn", description="Differentiable logic gate networks (IWP / OP).",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(command=None)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train a network (default: a small one on digits)",
                       epilog=_recipes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--dataset", help="digits (bundled), mnist, cifar10, cifar100, a dataset .h5 "
                                     f"file or a .csv table (default {DEFAULT_DATASET})")
    t.add_argument("--target", help="the label column of a .csv --dataset (every other column "
                   "must hold numbers; each gets --thresholds quantile thermometer bits)")
    t.add_argument("--data-dir", help="folder of prepared datasets (default $PYLGN_DATA or ./data)")
    t.add_argument("--arch", help="dense (LogicLayers of --width, the default) or a conv "
                   "LogicTreeNet from pylgn.conv.ARCHS, e.g. cdlgn-m (needs images)")
    t.add_argument("--crop", type=int, help="keep the centre CROP x CROP pixels of each image "
                   "(default: a conv --arch's input size, else read from the training images: "
                   "the smallest centred square with >= 97 %% of the label-explained variance; "
                   "20 on MNIST); 0 = no crop")
    t.add_argument("--thresholds", type=int, help="thermometer thresholds per value (default: "
                   "read from the data: images, the fewest of 1/2/4/8 keeping >= 85 %% of the "
                   "label-explained pixel variance; tables, rows per class / 25 in [2, 8])")
    t.add_argument("--layers", type=int, help="logic layers")
    t.add_argument("--width", type=int, help="gates per layer")
    t.add_argument("--last-width", type=int, metavar="N",
                   help="gates of the last dense layer (default --width): a narrow last layer "
                        "means fewer outputs per class, so a smaller popcount and argmax in the "
                        "circuit (LUTs on an FPGA)")
    t.add_argument("--arity", type=int, help="inputs per gate, 1..6 (default 2)")
    t.add_argument("--connections", choices=LAYER_CONNECTIONS,
                   help="wiring of the dense layers: random (default), unique, or learned: each "
                        "gate input chooses its source among --candidates rows (pylgn.choice)")
    t.add_argument("--candidates", type=_candidates, metavar="C",
                   help="with --connections learned: candidate sources per gate input, an int "
                        ">= 2 or 'all' (default 16)")
    t.add_argument("--choice", choices=CHOICES,
                   help="with --connections learned: ste = straight-through argmax (default), "
                        "softmax = a mixture in training, the argmax in eval")
    t.add_argument("--learned-layers", choices=("all", "first"),
                   help="with --connections learned: which dense layers learn their wiring "
                        "(default all; first = the first only, as DWN's learnable mapping)")
    t.add_argument("--param", choices=("iwp", "op"), help="parametrization (default iwp)")
    t.add_argument("--init", choices=INITS, help="initialization (default residual)")
    t.add_argument("--estimator", choices=ESTIMATORS, help="IWP estimator (default sin)")
    t.add_argument("--tau", type=float, help="GroupSum temperature (default: the recipe's, "
                   "scaled by sqrt(gates per class / the gates per class it holds at), for dense "
                   "nets; the architecture's for a conv --arch)")
    t.add_argument("--gumbel", type=float, metavar="T",
                   help="train on Gumbel-sampled 0/1 tables at temperature T with a "
                        "straight-through gradient (pylgn.gumbel); 0 = off (default)")
    t.add_argument("--lr", type=float, help="Adam learning rate (the peak, with a schedule)")
    t.add_argument("--lr-schedule", choices=SCHEDULES,
                   help="constant, or cosine decay to 0 at --steps (pylgn.optim.scheduled_lr)")
    t.add_argument("--weight-decay", type=float, help="decoupled (AdamW) weight decay: each "
                   "step also subtracts lr * weight_decay * w (default 0; a conv --arch's own)")
    t.add_argument("--warmup", type=int, help="steps of linear learning-rate warm-up (default 0)")
    t.add_argument("--batch-size", type=int, help="samples per micro-batch (default 100)")
    t.add_argument("--accumulate", type=int, help="micro-batches per step (default 1)")
    t.add_argument("--seed", type=int, help="model and data-order seed (default 0)")
    t.add_argument("--learn-thresholds", action=argparse.BooleanOptionalAction, default=None,
                   help="learn the thermometer thresholds (one vector per image channel) with "
                        "the network (pylgn.thresholds.LearnableThermometer; the default of the "
                        "28x28 recipe; the exports compile them in)")
    t.add_argument("--augment", nargs="?", const="crop", choices=("none", "crop", "shift"),
                   help="training-image augmentation: crop (the default with a bare --augment) = "
                        "random resized crop (+ horizontal flip for CIFAR), shift = random "
                        "translation by up to 2 pixels, none")
    t.add_argument("--steps", type=int,
                   help="optimizer steps (the recipe's by default; 3000 on digits); with --resume, "
                        "the total to reach (a cosine schedule decays to 0 there)")
    t.add_argument("--eval-every", type=int, default=1000,
                   help="evaluate, log and checkpoint every N steps (default 1000)")
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    t.add_argument("--out", help="output folder (default runs/<dataset>, or the --resume folder)")
    t.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the files of another run in the --out folder (refused otherwise)")
    t.add_argument("--keep-best", action="store_true",
                   help="also keep DIR/best.h5, the checkpoint of the best discretized test accuracy")
    t.add_argument("--distributed", choices=("auto", "off", "mpi", "nccl"), default="auto",
                   help="data-parallel training over the ranks of `mpirun -n N pylgn train ...` "
                        "(pylgn.distributed): auto = mpi when an MPI launcher started several "
                        "ranks (nccl with --device cuda), else off (default auto)")
    t.add_argument("--comm-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="with several ranks: end the job when a rank waits this long for the "
                        "others (one stuck or gone; default 600)")
    _common(t, threads=True)
    t.set_defaults(run=cmd_train)

    e = sub.add_parser("eval", help="test accuracy of a checkpoint (relaxed and discretized)")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", help="default: the dataset the checkpoint was trained on")
    e.add_argument("--target", help="label column of a .csv --dataset (default: the training one)")
    e.add_argument("--data-dir")
    e.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    _common(e, threads=True)
    e.set_defaults(run=cmd_eval)

    i = sub.add_parser("info", help="layers, gates, parameters and gate histograms of a checkpoint")
    i.add_argument("checkpoint")
    i.add_argument("--batch-size", type=int, default=100,
                   help="batch size for the training-memory estimate (default 100)")
    _common(i)
    i.set_defaults(run=cmd_info)

    x = sub.add_parser("export", help="the discretized network as C, Verilog or a circuit file")
    x.add_argument("checkpoint")
    x.add_argument("--format", choices=("c", "verilog", "circuit"), required=True)
    x.add_argument("-o", "--output", required=True, help="file to write")
    x.add_argument("--no-simplify", action="store_true", help="export the circuit as trained")
    x.add_argument("--main", action="store_true",
                   help="with --format c: add a main() (compiled with -DPYLGN_MAIN) that reads "
                        "raw float32 samples from a file or stdin and prints one class per line")
    x.add_argument("--synth", action="store_true",
                   help="with --format verilog: write the LUT-mapped Verilog of pylgn.fpga "
                        "(n-input gates as LUT truth tables, popcount and argmax in logic), "
                        "synthesize it with Yosys and print LUTs, flip-flops and logic levels")
    x.add_argument("--lut", type=int, choices=(4, 6), help="with --synth: LUT inputs (default 6)")
    x.add_argument("--target", choices=("generic", "xilinx"),
                   help="with --synth: yosys synth -lut N (generic, the default) or synth_xilinx")
    x.add_argument("--pipeline", type=int, metavar="K",
                   help="with --synth: registers every K gate levels (default: combinational)")
    x.set_defaults(run=cmd_export, json=False)

    r = sub.add_parser("predict", help="classify raw samples: one class per line")
    r.add_argument("checkpoint")
    r.add_argument("input", metavar="INPUT", help="a .npy of raw samples ((n, features), "
                   "(n, C, H, W) or (n, H, W)), a .csv with the training columns (the target "
                   "column is ignored) or a pylgn dataset .h5 (its test split)")
    r.add_argument("-o", "--output", help="file to write (default: stdout)")
    r.add_argument("--scores", action="store_true",
                   help="after each class, the group counts (the logits times tau)")
    r.add_argument("--threads", type=int, help="numba threads (default: all cores)")
    r.set_defaults(run=cmd_predict, json=False)
    return p


def _candidates(text):
    """--candidates: 'all' or an int >= 2."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 2 or 'all', got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an int >= 2 or 'all', got {value}")
    return value


def _common(p, threads=False):
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    if threads:
        p.add_argument("--threads", type=int, help="numba threads (default: all cores)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _set_threads(n):
    if n is None:
        return
    import numba
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise UsageError(f"--threads: expected 1..{numba.config.NUMBA_NUM_THREADS}, got {n}")
    numba.set_num_threads(n)


def _emit(args, summary, result):
    """Readable lines, then (with --json) one JSON object as the last stdout line."""
    for line in summary:
        print(line)
    if args.json:
        print(json.dumps(result))


# train -----------------------------------------------------------------------------------------

def _resolve(args, ckpt):
    """(settings, dataset, recipe) of the run: flags, else (on --resume) the checkpoint's, which
    a different explicit flag may not contradict, else the recipe for the data's shape and size,
    whose READ settings are read from the training set (pylgn.recipes.read_data); ``recipe``:
    {name, decisions: {setting: reason}}. ``steps`` (the total to reach) may change on
    --resume."""
    from .data import cropped_shape, load_dataset
    from .recipes import BASE, READ, read_data, recipe
    saved = ckpt.meta.get("settings", {}) if ckpt is not None else {}
    if ckpt is not None and not saved:
        raise UsageError(f"--resume: {ckpt.path} was not written by `pylgn train`")
    name = _pick("dataset", args.dataset, saved, DEFAULT_DATASET)
    target = _pick("target", args.target, saved, None)
    ds = load_dataset(name, args.data_dir, target=target)
    cfg = dict(dataset=name, **({"target": target} if target else {}))
    recipe_name, defaults = (recipe(ds.shape, len(ds.y_train), args.arity) if ckpt is None
                             else ("checkpoint", BASE))
    for key, default in defaults.items():
        cfg[key] = _pick(key, getattr(args, key), saved, default)
    stored = ckpt.meta.get("recipe") if ckpt is not None else None
    stored = stored if isinstance(stored, dict) else {}
    decisions = stored.get("decisions") if isinstance(stored.get("decisions"), dict) else {}
    cfg["crop"] = cfg["crop"] or None                                # --crop 0: no crop
    if cfg["crop"] != READ:
        cropped_shape(ds.shape, cfg["crop"])                         # validates --crop
    if ckpt is None:
        _arch_defaults(cfg, args, ds.shape)
        given = {key for key in defaults if getattr(args, key, None) is not None}
        decisions = read_data(cfg, ds, given, recipe_name, args.arity)
    else:
        recipe_name = str(stored.get("name", "checkpoint"))
    cfg["augment"] = False if cfg["augment"] in ("none", None) else cfg["augment"]
    cropped_shape(ds.shape, cfg["crop"])                             # validates --crop
    for key, (low, high) in LIMITS.items():
        if key == "last_width" and cfg[key] is None:
            continue
        if not low <= cfg[key] <= high:
            raise UsageError(f"--{key.replace('_', '-')}: expected a value in [{low}, {high}], "
                             f"got {cfg[key]}")
    if cfg["gumbel"]:
        from ._checks import check_temperature
        check_temperature("--gumbel", cfg["gumbel"])
    return cfg, ds, dict(name=recipe_name, decisions=decisions)


def _arch_defaults(cfg, args, shape):
    """A conv --arch brings its own defaults where no flag is given: its GroupSum tau (and the
    lr, schedule, weight decay and steps of its recipe, where ARCHS has them), and a
    centre crop to its input size when the images are larger."""
    from .conv import ARCHS
    spec = ARCHS.get(cfg["arch"])
    if spec is None:
        return
    for flag in ("width", "layers", "last_width"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag}: a conv --arch ({cfg['arch']}) has its own layers and "
                             f"widths (pylgn.conv.ARCHS); drop --{flag.replace('_', '-')}, or "
                             f"use --arch dense")
    for key in ("tau", "lr", "lr_schedule", "weight_decay", "steps"):   # the arch's recipe
        if key in spec and getattr(args, key) is None:
            cfg[key] = spec[key]
    if args.crop is None and len(shape) == 3 and min(shape[1:]) > spec["in_size"]:
        cfg["crop"] = spec["in_size"]


def _pick(key, given, saved, default):
    """The flag's value, the checkpoint's (a different flag is an error, except --steps) or the
    default."""
    if key in saved:
        if given is not None and given != saved[key] and key != "steps":
            raise UsageError(f"--{key.replace('_', '-')}: cannot change on --resume "
                             f"(the checkpoint has {saved[key]!r})")
        return saved[key] if given is None else given
    return default if given is None else given


def build_layers(cfg, shape, classes):
    """arch "dense": ``layers`` LogicLayers of ``width`` gates and a GroupSum over ``classes``;
    otherwise the conv architecture of that name (pylgn.conv.ARCHS) on images of ``shape``
    (C, H, W), thermometer-encoded channel-major (C * thresholds input channels)."""
    import numpy as np
    from . import GroupSum, LogicLayer
    from ._checks import check_int
    kw = dict(arity=cfg["arity"], param=cfg["param"], estimator=cfg["estimator"], init=cfg["init"],
              gumbel=cfg.get("gumbel") or None)
    if cfg["arch"] != "dense":
        from .conv import ARCHS, build_arch
        if cfg["arch"] not in ARCHS:
            raise UsageError(f"--arch: expected dense or one of {tuple(ARCHS)}, got {cfg['arch']!r}")
        if len(shape) != 3:
            raise UsageError(f"--arch {cfg['arch']}: needs images (C, H, W), the dataset has "
                             f"samples of shape {shape}")
        if cfg.get("connections", "random") != "random":
            raise UsageError(f"--connections: a conv --arch draws its own tree leaves; "
                             f"--connections {cfg['connections']} is for dense nets")
        return _encoder(cfg, shape) + build_arch(
            cfg["arch"], in_channels=shape[0] * cfg["thresholds"], classes=classes,
            in_size=shape[1:], tau=cfg["tau"], **kw)
    n = check_int("--layers", cfg["layers"], 1)
    if cfg["width"] % classes:
        raise UsageError(f"--width: must be a multiple of the {classes} classes (GroupSum), got "
                         f"{cfg['width']}; e.g. --width {-(-cfg['width'] // classes) * classes}")
    in_dim = int(np.prod(shape)) * cfg["thresholds"]
    widths = [cfg["width"]] * (n - 1) + [cfg.get("last_width") or cfg["width"]]
    if widths[-1] % classes:
        raise UsageError(f"--last-width: must be a multiple of the {classes} classes (GroupSum), "
                         f"got {widths[-1]}")
    ins = [in_dim] + widths[:-1]
    layers = [LogicLayer(ins[i], widths[i], **kw, **_wiring(cfg, i, ins[i])) for i in range(n)]
    return _encoder(cfg, shape) + layers + [GroupSum(classes, cfg["tau"])]


def _wiring(cfg, i, in_dim):
    """The wiring arguments of dense layer ``i``: learned (with its candidates and choice) when
    --connections learned and --learned-layers covers it, else --connections (random for the
    layers a learned first layer leaves fixed)."""
    kind = cfg.get("connections", "random")
    if kind != "learned":
        return dict(connections=kind)
    if cfg.get("learned_layers", "all") == "first" and i > 0:
        return dict(connections="random")
    cand = cfg.get("candidates", 16)
    if cand != "all" and cand > in_dim:
        raise UsageError(f"--candidates: {cand} is more than the {in_dim} inputs of layer {i}")
    return dict(connections="learned", candidates=cand, choice=cfg.get("choice", "ste"))


def _encoder(cfg, shape):
    """[LearnableThermometer] with --learn-thresholds: one threshold vector per channel (image
    channels, or every value of a flat sample), else []."""
    if not cfg.get("learn_thresholds"):
        return []
    import numpy as np
    from .thresholds import LearnableThermometer
    channels = shape[0]
    return [LearnableThermometer(channels, cfg["thresholds"],
                                 positions=int(np.prod(shape)) // channels)]


def _image_transform(ds, cfg):
    from .data import augment as augment_images, random_shift
    flip = ds.name.startswith("cifar")

    def transform(xb, rng):
        """Raw images -> (augmented) model inputs of the centre crop."""
        if cfg["augment"] == "shift":
            xb = random_shift(xb, rng)
        elif cfg["augment"]:                       # "crop" (True in older checkpoints)
            xb = augment_images(xb, rng, flip=flip)
        return _inputs(ds, xb, cfg)
    return transform


def _inputs(ds, x, cfg):
    """Model inputs: thermometer bits, or with --learn-thresholds the values scaled to [0, 1]
    (the model's LearnableThermometer encodes them)."""
    if cfg.get("learn_thresholds"):
        return ds.scale(x, cfg["crop"])
    return ds.encode(x, cfg["thresholds"], cfg["crop"])


def _setup(args, comm=None):
    """(dataset, settings, trainer, out folder) for a fresh or resumed run; ``comm``: the
    communicator of a data-parallel run."""
    from functools import partial
    from .checkpoint import load
    from .data import cropped_shape
    from .model import Sequential
    from .optim import Adam, scheduled_lr
    from .train import Trainer
    from .data import check_splits
    ckpt = load(args.resume, device=args.device) if args.resume else None
    cfg, ds, chosen = _resolve(args, ckpt)
    check_splits(f"--dataset {cfg['dataset']}", ds.y_train, ds.y_test, ds.class_names)
    if ckpt is None:
        model = Sequential(build_layers(cfg, cropped_shape(ds.shape, cfg["crop"]), ds.num_classes),
                           seed=cfg["seed"], device=args.device)
        opt = Adam(model, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    elif ckpt.optimizer is None or ckpt.trainer_state is None:
        raise UsageError(f"--resume: {ckpt.path} has no optimizer/trainer state")
    else:
        model, opt = ckpt.model, ckpt.optimizer
    schedule = partial(scheduled_lr, cfg["lr"], total=cfg["steps"], kind=cfg["lr_schedule"],
                       warmup=cfg["warmup"])
    trainer = Trainer(model, opt, batch_size=cfg["batch_size"], accumulate=cfg["accumulate"],
                      seed=cfg["seed"], lr_schedule=schedule, comm=comm)
    if ckpt is not None:
        try:
            trainer.load_state(ckpt.trainer_state)
        except (TypeError, ValueError) as e:
            raise UsageError(f"--resume {ckpt.path}: {e}") from None
    return ds, cfg, trainer, _train_out(args), chosen


def recipe_lines(chosen):
    """The recipe's name and the decisions it read from the data, one line each (what
    ``pylgn train`` prints before training and ``pylgn info`` shows)."""
    lines = [f"  recipe {chosen['name']}" + (": read from the training data:"
                                             if chosen["decisions"] else
                                             " (its settings; none read from the data)")]
    return lines + [f"    {key.replace('_', '-')} {why}"
                    for key, why in chosen["decisions"].items()]


def _communicator(args):
    """The communicator --distributed asks for: auto = MPI (NCCL with --device cuda) when an
    MPI launcher started several ranks (pylgn.distributed.launched_size reads its environment
    variables), else one process."""
    from .distributed import get_communicator, launched_size
    kind = args.distributed
    if kind == "auto":
        kind = "off" if launched_size() == 1 else ("nccl" if args.device == "cuda" else "mpi")
    if kind == "nccl" and args.device != "cuda":
        raise UsageError("--distributed nccl: needs --device cuda")
    if not args.comm_timeout > 0:
        raise UsageError(f"--comm-timeout: expected seconds > 0, got {args.comm_timeout}")
    if kind == "off":
        return get_communicator("single")
    return get_communicator(kind, timeout=args.comm_timeout)


def _abort(comm, error):
    """Report ``error`` with the rank, then end every rank (MPI_Abort), so that no rank waits
    forever in a collective for this one; exit status 2 for user mistakes, else 1."""
    import traceback
    from .distributed import DistributedError
    usage = isinstance(error, (UsageError, ValueError, TypeError, OSError))
    if not usage and not isinstance(error, (FloatingPointError, MemoryError, KeyboardInterrupt,
                                            DistributedError)):
        traceback.print_exc()
    print(f"pylgn: error on rank {comm.rank} of {comm.size}: {type(error).__name__}: {error}",
          file=sys.stderr, flush=True)
    time.sleep(0.5)                  # lets the launcher forward the message before it kills all
    comm.abort(2 if usage else 1)


def cmd_train(args):
    _set_threads(args.threads)
    comm = _communicator(args)
    if comm.size == 1:
        return _train(args, comm)
    try:
        return _train(args, comm)
    except BaseException as e:       # one rank's error ends all (the checkpoint on disk stays)
        _abort(comm, e)


def _train(args, comm):
    if (args.steps is not None and args.steps < 1) or args.eval_every < 1:
        raise UsageError("--steps and --eval-every: expected ints >= 1")
    from .encoders import dataset_config
    ds, cfg, trainer, out, chosen = _setup(args, comm)
    if comm.rank == 0 and trainer.step == 0:
        for line in recipe_lines(chosen):
            print(line, flush=True)
    xte = _inputs(ds, ds.x_test, cfg)
    todo, step0, sec0 = cfg["steps"] - trainer.step, trainer.step, trainer.seconds
    if todo < 0:
        raise UsageError(f"--steps: {cfg['steps']} is below the checkpoint's step {trainer.step}; "
                         f"nothing was trained or written")
    if todo > 0:
        os.makedirs(out, exist_ok=True)
        meta = dict(settings=cfg, recipe=chosen, dataset=cfg["dataset"],
                    thresholds=cfg["thresholds"],
                    crop=cfg["crop"] or 0,
                    class_names=ds.class_names,
                    encoder=dataset_config(ds, cfg["thresholds"], cfg["crop"],
                                           bool(cfg.get("learn_thresholds")), cfg.get("target")))
        trainer.fit(ds.x_train, ds.y_train, todo, eval_data=(xte, ds.y_test),
                    eval_every=args.eval_every, checkpoint_path=os.path.join(out, "checkpoint.h5"),
                    checkpoint_every=args.eval_every,
                    best_path=os.path.join(out, "best.h5") if args.keep_best else None,
                    history_path=os.path.join(out, "history.json"), progress=not args.no_progress,
                    transform=_image_transform(ds, cfg), meta=meta)
    h = trainer.history
    scores = (dict(relaxed=h["test_accuracy_relaxed"][-1], discrete=h["test_accuracy_discrete"][-1])
              if h["step"] and h["step"][-1] == trainer.step else trainer.evaluate(xte, ds.y_test))
    run_s = trainer.seconds - sec0
    result = dict(test_accuracy_discrete=scores["discrete"],
                  test_accuracy_relaxed=scores["relaxed"],
                  discretization_gap=scores["relaxed"] - scores["discrete"], steps=trainer.step,
                  seconds=round(trainer.seconds, 3),
                  steps_per_second=round((trainer.step - step0) / run_s, 2) if run_s > 0 else None,
                  gates=trainer.model.num_gates, dataset=cfg["dataset"],
                  checkpoint=os.path.join(out, "checkpoint.h5"))
    arch = (f"{cfg['layers']} x {cfg['width']}" if cfg["arch"] == "dense" else
            f"{cfg['arch']}, {trainer.model.num_gates}")
    summary = [f"pylgn train: {cfg['dataset']}, {arch} {cfg['param']} gates (arity "
               f"{cfg['arity']}), {trainer.step} steps in {trainer.seconds:.1f} s",
               f"  test accuracy: discretized {scores['discrete']:.4f}, relaxed "
               f"{scores['relaxed']:.4f} (gap {result['discretization_gap']:+.4f})",
               f"  checkpoint: {result['checkpoint']}"]
    if comm.rank == 0:
        _emit(args, summary, result)


# eval, info, export ----------------------------------------------------------------------------

def cmd_eval(args):
    from .checkpoint import load
    from .data import load_dataset
    from .train import evaluate
    _set_threads(args.threads)
    ckpt = load(args.checkpoint, device=args.device)
    name = args.dataset or ckpt.meta.get("dataset")
    if name is None:
        raise UsageError(f"{args.checkpoint}: no dataset recorded; pass --dataset")
    ds = load_dataset(name, args.data_dir, target=args.target or
                      ckpt.meta.get("settings", {}).get("target"))
    if "encoder" in ckpt.meta:
        return _eval_encoded(args, ckpt, ds, name)
    if hasattr(ds, "feature_names") and name != ckpt.meta.get("dataset"):
        raise UsageError(f"--dataset {name}: {args.checkpoint} predates stored encoders, so its "
                         f"cut points would be re-fitted on this file; it can be evaluated only "
                         f"on its training file {ckpt.meta.get('dataset')!r} (retrain to store "
                         f"them)")
    crop = ckpt.meta.get("crop") or None
    values = ds.encoded_dim(1, crop)
    learned = ckpt.model.encoder is not None             # the model encodes scaled values itself
    thresholds = ckpt.meta.get("thresholds") or max(1, ckpt.model.in_dim // values)
    if learned:
        if values != ckpt.model.in_dim:
            raise UsageError(f"--dataset: {name} gives {values} values per sample, the model "
                             f"takes {ckpt.model.in_dim}")
    elif ds.encoded_dim(thresholds, crop) != ckpt.model.in_dim:
        raise UsageError(f"--dataset: {name} with {thresholds} thresholds"
                         f"{f' and a {crop} x {crop} crop' if crop else ''} gives "
                         f"{ds.encoded_dim(thresholds, crop)} inputs, the model takes "
                         f"{ckpt.model.in_dim}")
    t0 = time.perf_counter()
    x = ds.scale(ds.x_test, crop) if learned else ds.encode(ds.x_test, thresholds, crop)
    s = evaluate(ckpt.model, x, ds.y_test)
    result = dict(test_accuracy_discrete=s["discrete"], test_accuracy_relaxed=s["relaxed"],
                  discretization_gap=s["gap"], steps=ckpt.step,
                  seconds=round(time.perf_counter() - t0, 3), dataset=name)
    _emit(args, [f"{args.checkpoint} (step {ckpt.step}) on {name}: discretized "
                 f"{s['discrete']:.4f}, relaxed {s['relaxed']:.4f} (gap {s['gap']:+.4f})"], result)


def _eval_encoded(args, ckpt, ds, name):
    """eval with the checkpoint's encoder: the data are checked against it (columns, shape,
    labels) and encoded with its stored cut points; nothing is re-fitted."""
    from .encoders import check_dataset, from_checkpoint
    from .train import evaluate
    encoder = from_checkpoint(ckpt)
    y = check_dataset(encoder, ds, f"--dataset {name}")
    t0 = time.perf_counter()
    if ckpt.model.encoder is not None:                   # the model encodes scaled values itself
        x = ds.scale(ds.x_test, encoder.crop)
    else:
        x = encoder.encode(ds.x_test)
    s = evaluate(ckpt.model, x, y)
    result = dict(test_accuracy_discrete=s["discrete"], test_accuracy_relaxed=s["relaxed"],
                  discretization_gap=s["gap"], steps=ckpt.step,
                  seconds=round(time.perf_counter() - t0, 3), dataset=name)
    _emit(args, [f"{args.checkpoint} (step {ckpt.step}) on {name}: discretized "
                 f"{s['discrete']:.4f}, relaxed {s['relaxed']:.4f} (gap {s['gap']:+.4f})"], result)


def cmd_predict(args):
    """Raw samples -> one class per line (pylgn.predict), to -o or stdout."""
    from .checkpoint import load
    from .encoders import from_checkpoint
    from .predict import format_lines, predict, read_input
    _set_threads(args.threads)
    ckpt = load(args.checkpoint)
    encoder = from_checkpoint(ckpt)
    x = read_input(args.input, encoder)
    classes, scores = predict(ckpt.model.to_circuit(), encoder, x, args.scores)
    text = format_lines(classes, encoder.class_names or ckpt.meta.get("class_names"), scores)
    if args.output is None:
        sys.stdout.write(text)
    else:
        from ._io import write_atomic
        write_atomic(args.output, text)


def gate_histogram(layer, top=8):
    """{gate name (arity 2) or table code (hex): count} of the discretized gates, most common
    first (LogicConv2d: the kernels' gates, counted once, not per position)."""
    import numpy as np
    from . import gates
    from .conv import LogicConv2d
    levels = [layer] if hasattr(layer, "discrete_table") else \
        layer.levels if isinstance(layer, LogicConv2d) else []    # (a thermometer has levels too)
    counts = {}
    for lv in levels:
        codes = gates.table_class(lv.backend.to_host(lv.discrete_table()))
        for code, n in zip(*np.unique(codes, return_counts=True)):
            key = gates.GATE_NAMES[int(code)] if lv.arity == 2 else \
                f"0x{int(code):0{max(1, 2 ** lv.arity // 4)}x}"
            counts[key] = counts.get(key, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if levels and levels[0].arity != 2 and len(ranked) > top:
        ranked = ranked[:top] + [("other", sum(n for _, n in ranked[top:]))]
    return dict(ranked)


def cmd_info(args):
    from .checkpoint import load
    ckpt = load(args.checkpoint)
    model = ckpt.model
    layers = []
    for layer in model.layers:
        cfg = layer.config()
        gates = (layer.out_dim if hasattr(layer, "discrete_table")
                 else getattr(layer, "num_gates", 0))
        layers.append(dict(config=cfg, gates=int(gates), parameters=int(layer.n_params),
                           histogram=gate_histogram(layer)))
    from .conv import gate_count, memory_estimate
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: expected an int >= 1, got {args.batch_size}")
    memory = memory_estimate(model.layers, args.batch_size, dtype=model.dtype)
    result = dict(checkpoint=args.checkpoint, step=ckpt.step, gates=int(model.num_gates),
                  gate_count=gate_count(model.layers), parameters=int(model.params.size),
                  in_dim=model.in_dim, out_dim=model.out_dim, training_memory_bytes=memory,
                  batch_size=args.batch_size,
                  meta={k: v for k, v in ckpt.meta.items() if k != "class_names"}, layers=layers)
    lines = [f"{args.checkpoint}: step {ckpt.step}, {model.num_gates} gates, {model.params.size} "
             f"parameters, {model.in_dim} inputs -> {model.out_dim} outputs",
             f"  training memory at batch {args.batch_size}: {memory['total'] / 2 ** 20:.1f} MiB "
             f"(parameters+grads+Adam {memory['params'] / 2 ** 20:.1f}, activations "
             f"{memory['activations'] / 2 ** 20:.1f}, workspace {memory['workspace'] / 2 ** 20:.1f})"]
    chosen = ckpt.meta.get("recipe")
    if isinstance(chosen, dict) and isinstance(chosen.get("decisions"), dict):
        lines += recipe_lines(dict(name=chosen.get("name", "?"), decisions=chosen["decisions"]))
    for i, entry in enumerate(layers):
        cfg = dict(entry["config"])
        kind = cfg.pop("type")
        lines.append(f"  [{i}] {kind} " + ", ".join(f"{k}={v}" for k, v in cfg.items()
                                                    if v is not None))
        if entry["histogram"]:
            lines.append("      gates: " + ", ".join(f"{k} {v}" for k, v in
                                                      entry["histogram"].items()))
    _emit(args, lines, result)


def cmd_export(args):
    from .checkpoint import load
    ckpt = load(args.checkpoint)
    circuit = ckpt.model.to_circuit()
    before = circuit.num_gates
    if not args.no_simplify:
        circuit = circuit.simplify()
    if args.synth or any(v is not None for v in (args.lut, args.target, args.pipeline)):
        return _export_synth(args, circuit, before, _raw_encoder(ckpt))
    if args.format == "circuit":
        circuit.save(args.output)
    else:
        text = _export_c(args, ckpt, circuit) if args.format == "c" else circuit.to_verilog()
        from .checkpoint import atomic_path
        with atomic_path(args.output) as tmp, open(tmp, "w") as f:
            f.write(text)
    thresholds = ckpt.meta.get("thresholds")
    encoding = "" if not thresholds else \
        f" (thermometer, {thresholds} thresholds per value)" if ckpt.model.encoder is None else \
        f" (learned thermometer, {thresholds} thresholds per value, compiled in: pylgn_predict)" \
        if args.format == "c" and "encoder" in ckpt.meta else \
        (f" (learned thermometer, {thresholds} thresholds per value: the file does not hold "
         f"them; the bits are pylgn.load(checkpoint).model.encoder.encode(x))")
    print(f"{args.output}: {args.format}, {circuit.num_gates} gates (trained: {before}), "
          f"{circuit.in_dim} input bits{encoding}")


def _export_c(args, ckpt, circuit):
    """The C of the whole classifier when the checkpoint holds its encoder (pylgn_predict: raw
    samples -> class, the comparisons compiled in), else the bit-level C."""
    from .encoders import from_checkpoint
    try:
        encoder = from_checkpoint(ckpt)
    except ValueError as e:
        if args.main:
            raise UsageError(f"--main: {e}") from None
        encoder = None                                   # the bit-level C only
    return circuit.to_c(encoder=encoder, main=args.main)


def _raw_encoder(ckpt):
    """The checkpoint's encoder when it reads 8-bit values (the Verilog raw top), else None."""
    from .encoders import from_checkpoint
    try:
        encoder = from_checkpoint(ckpt)
    except ValueError:
        return None
    return encoder if encoder.kind != "quantile" and encoder.max_value <= 255 else None


def _export_synth(args, circuit, before, encoder=None):
    """--synth: write pylgn.fpga's LUT Verilog (with an 8-bit encoder: the raw top, comparators
    to class), synthesize it with Yosys, print the report."""
    if not args.synth:
        raise UsageError("--lut, --target and --pipeline: need --synth")
    if args.format != "verilog":
        raise UsageError(f"--synth: needs --format verilog, got --format {args.format}")
    if args.pipeline is not None and args.pipeline < 1:
        raise UsageError(f"--pipeline: expected gate levels >= 1, got {args.pipeline}")
    from . import fpga
    from .checkpoint import atomic_path
    with atomic_path(args.output) as tmp, open(tmp, "w") as f:
        f.write(fpga.to_lut_verilog(circuit, args.pipeline) if encoder is None else
                fpga.to_raw_verilog(circuit, encoder, args.pipeline))
    try:
        r = fpga.synthesize(circuit, lut=args.lut or 6, target=args.target or "generic",
                            pipeline=args.pipeline, simplify=False, encoder=encoder)
    except RuntimeError as e:
        raise UsageError(f"--synth: {e}") from None
    sizes = ", ".join(f"LUT{n} {c}" for n, c in sorted(r["luts_by_size"].items(), reverse=True))
    print(f"{args.output}: LUT Verilog ({fpga.TOP if encoder is None else fpga.RAW_TOP}), "
          f"{circuit.num_gates} gates (trained: "
          f"{before}), depth {circuit.depth}, {circuit.in_dim} input bits")
    print(f"  yosys ({r['target']}, LUT{r['lut']}): {r['luts']} LUTs ({sizes}), {r['ffs']} "
          f"flip-flops, {r['logic_levels']} logic levels, latency {r['latency_cycles']} cycles, "
          f"{r['seconds']:.1f} s" + (f"; the encoder's comparators: {r['luts_encoder']} LUTs"
                                     if encoder is not None else ""))


if __name__ == "__main__":
    sys.exit(main())
