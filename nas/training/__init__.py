"""Stage 3, training: the one training loop (``loop``) and its numerics (``numerics``),
the metrics, the Optuna study of the recipe (``tuning``), and the champion's full training with its test
report (``final``, ``report``)."""
