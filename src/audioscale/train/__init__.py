"""MAE pretraining: recipe (lr/warm-up/batch rule), schedule, trainer, checkpoints, DDP.

Entry points: ``audioscale.train.trainer.pretrain(cfg, out_dir)`` and
``audioscale.train.checkpoint.load_mae(run_dir)``. Submodules are imported on demand so
that reading a recipe does not pull in the whole training stack.
"""
