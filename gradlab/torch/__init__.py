"""gradlab.torch: gradlab's instruments on a user's own PyTorch training loop (the optional extra
`pip install gradlab[torch]`; the only package of gradlab that imports torch at run time).

    watch(model, every=10, probe=None, name="torch", optimizer=None, scaler=None, modules=(), steps=None)
        -> Watcher: a context manager; watcher.step(loss) after each optimizer step; watcher.save(DIR),
        watcher.tables(), watcher.to_csv(path), watcher.to_tensorboard(logdir). See gradlab.torch.watcher.
"""

from gradlab.torch.watcher import Watcher, watch

__all__ = ["Watcher", "watch"]
