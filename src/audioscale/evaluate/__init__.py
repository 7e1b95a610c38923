"""The evaluation stage: everything a finished checkpoint (or a baseline encoder) is
measured with. It sits between embed / metrics / probe (below) and sweep (above): the
sweep schedules runs and keeps their stage markers; this package measures.

- ``context``   the study's eval context and pool (``EvalContext``, ``build_eval_context``,
                ``task_folders``), extraction under it, ``pool_overlap``, ``context_info``
- ``keys``      ``eval_key`` / ``EVAL_VERSION``: what an evaluation depends on besides the
                weights; ``is_current`` and ``stale_runs``
- ``markers``   reading a run folder's JSON markers (a corrupt one is redone)
- ``spectral``  spectral rows per checkpoint (``spectral_row``, ``pool_matrix``,
                ``measure_checkpoint``, ``measure_encoder``, ``streamed_row``)
- ``slices``    train and heldout slices of a run, and the equal-N RankMe gap
- ``heldout``   the held-out loss at the reference mask ratio and clip length (the loss
                loop itself is ``train.heldout.heldout_loss``, which the trainer uses too)
- ``probes``    task embeddings and probe rows of a run or a baseline
- ``info``      a trained run's info record (model card, done.json, pool overlap)
- ``baseline``  random-init, log-mel and external encoders measured like a checkpoint
- ``records``   the typed records of a run's result (what every stage above returns)

Submodules import torch only inside the functions that need it.
"""
