"""Fitted scikit-learn reward models as bytes, without pickle: skops, with a fixed trust list.

:func:`dump_gbm` writes a fitted ``HistGradientBoostingClassifier`` with
:func:`skops.io.dumps` (a zip of JSON and numpy arrays: no code is stored);
:func:`load_gbm` reads it back with :func:`skops.io.loads`, which rebuilds only the
types it is told to trust: skops' own list of safe scikit-learn / numpy types plus
:data:`TRUSTED_TYPES`, never a type named by the file. A tampered file that names any
other type (``os.system``, a custom class) is refused before anything is built. Only
public scikit-learn API is used here; predictions of a loaded model come from its
public ``predict_proba``, so a loaded model predicts exactly what the fitted one did.

The stored state is scikit-learn's own, so a model saved under one scikit-learn
version is read under another only as well as skops can (scikit-learn warns on a
version change); ``constraints.txt`` pins the version the tests pass with.

>>> import numpy as np
>>> from sklearn.ensemble import HistGradientBoostingClassifier
>>> x = np.random.default_rng(0).random((200, 2)); y = (x[:, 0] > 0.5).astype(int)
>>> clf = HistGradientBoostingClassifier(max_iter=5).fit(x, y)
>>> again = load_gbm(dump_gbm(clf), n_features=2)
>>> bool((again.predict_proba(x) == clf.predict_proba(x)).all())
True
"""

from __future__ import annotations

import zipfile
from typing import Any

import numpy as np

from offrec.core.errors import InputError

__all__ = ["TRUSTED_TYPES", "dump_gbm", "load_gbm"]

#: types a fitted HistGradientBoostingClassifier holds beyond skops' default trusted list
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    # the categorical-feature preprocessor's validation callable (a partial of check_array)
    "functools.partial",
    "sklearn.utils.validation.check_array",
)


def dump_gbm(clf: Any) -> np.ndarray:
    """A fitted ``HistGradientBoostingClassifier`` as skops bytes, ``(n_bytes,)`` uint8."""
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier

    if not isinstance(clf, HistGradientBoostingClassifier):
        raise InputError(f"expected a HistGradientBoostingClassifier; got {type(clf).__name__}")
    blob = sio.dumps(clf, compression=zipfile.ZIP_DEFLATED)
    return np.frombuffer(blob, dtype=np.uint8).copy()


def load_gbm(blob: np.ndarray, *, n_features: int) -> Any:
    """The classifier :func:`dump_gbm` wrote; checked to be a fitted binary
    ``HistGradientBoostingClassifier`` on ``n_features`` columns.

    Raises ``InputError`` for bytes that are not a skops file, that name a type outside
    the trusted list, or that hold anything else.
    """
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier
    from skops.io.exceptions import UntrustedTypesFoundException

    data = np.asarray(blob)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise InputError(
            f"gbm model bytes must be a 1-D uint8 array; got {data.dtype} {data.shape}"
        )
    trusted = list(TRUSTED_TYPES)
    try:
        clf = sio.loads(data.tobytes(), trusted=trusted)
    except UntrustedTypesFoundException as exc:
        raise InputError(f"gbm model refused: {exc}") from None
    except Exception as exc:  # a damaged zip / JSON: the file's fault, not offrec's
        raise InputError(f"gbm model bytes are not a readable skops file: {exc}") from None
    if not isinstance(clf, HistGradientBoostingClassifier):
        raise InputError(
            f"gbm model must hold a HistGradientBoostingClassifier; got {type(clf).__name__}"
        )
    classes = np.asarray(getattr(clf, "classes_", []))
    if classes.tolist() != [0.0, 1.0]:
        raise InputError(
            f"gbm model must be a binary 0/1 classifier; got classes {classes.tolist()}"
        )
    if getattr(clf, "n_features_in_", None) != n_features:
        raise InputError(
            f"gbm model was fitted on {getattr(clf, 'n_features_in_', None)} columns; "
            f"expected context_dim + 1 = {n_features}"
        )
    return clf
