"""Stage 2, the search: the problem (``problem``, ``objectives``), the algorithms behind ask/tell
(``algorithms``), the evaluation strategies (``strategies``) on the evaluator's training jobs (``evaluate``),
the accuracy predictor (``predictor``), the generic loop with its checkpoints (``runner``), and what a user
watches (``progress``, ``plots``)."""
