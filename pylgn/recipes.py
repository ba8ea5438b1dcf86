"""Recipes: the CLI's default settings, chosen from the data's shape and size, not its name.

``recipe(shape, n_train)`` returns the settings of the first entry of ``RECIPES`` whose test
matches, laid over ``BASE``. Any dataset of the same shape (a 28 x 28 grayscale set in pylgn's
HDF5 format, say) gets the same recipe; every value is also a ``pylgn train`` flag.
"""
from dataclasses import dataclass, field

#: Settings every recipe starts from (and the values for data no entry matches).
BASE = dict(arch="dense", crop=None, thresholds=3, layers=4, width=2000, arity=2, param="iwp",
            init="residual", estimator="sin", tau=10.0, lr=0.01, lr_schedule="constant",
            weight_decay=0.0,
            warmup=0, batch_size=100, accumulate=1, seed=0, augment=False, steps=3000,
            gumbel=0.0, learn_thresholds=False, connections="random", candidates=16,
            choice="ste", learned_layers="all", last_width=None)


@dataclass(frozen=True)
class Recipe:
    name: str
    when: str                       # the test, in words (shown by ``pylgn train --help``)
    test: object                    # (shape, n_train) -> bool
    settings: dict = field(default_factory=dict)


def _images(shape, channels, size):
    return len(shape) == 3 and shape[0] == channels and tuple(shape[1:]) == (size, size)


RECIPES = (
    # DLGN "small" on MNIST-size digits: the 20 x 20 centre (the border is nearly always blank),
    # 6 x 8,000 IWP gates (48K), tau 10, a cosine-decayed learning rate.
    Recipe("28x28-grayscale", "1 x 28 x 28 images",
           lambda shape, n: _images(shape, 1, 28),
           dict(crop=20, thresholds=2, layers=6, width=8000, tau=10.0, lr=0.02,
                learn_thresholds=True,
                lr_schedule="cosine", steps=60000)),
    # DLGN "S" on CIFAR-size colour images: 4 x 12,000 gates, 3 thresholds, tau 100.
    Recipe("32x32-colour", "3 x 32 x 32 images",
           lambda shape, n: _images(shape, 3, 32),
           dict(thresholds=3, layers=4, width=12000, tau=100.0, lr=0.01, lr_schedule="cosine",
                steps=200000)),
    Recipe("default", "anything else (e.g. the 8 x 8 digits)", lambda shape, n: True, {}),
)


#: Settings of a recipe for wider gates, by (recipe, the least arity): a six-input gate's table
#: saturates sooner, so its GroupSum wants a lower tau (MNIST, 4 x 2000 arity-6 gates, 10k steps:
#: tau 6 97.18 %, bench/RESULTS.md) and a lower learning rate. Flags override them.
BY_ARITY = {"28x28-grayscale": ((4, dict(tau=6.0, lr=0.01)),)}


def recipe(shape, n_train, arity=None):
    """(name, settings) of the first recipe matching samples of ``shape`` (without the batch
    axis) and ``n_train`` training samples; with ``arity`` (a --arity flag), that recipe's
    BY_ARITY settings for it laid over."""
    for r in RECIPES:
        if r.test(tuple(shape), n_train):
            settings = {**BASE, **r.settings}
            for least, extra in BY_ARITY.get(r.name, ()):
                if arity is not None and arity >= least:
                    settings.update(extra)
            return r.name, settings
    raise AssertionError("the last recipe matches everything")
