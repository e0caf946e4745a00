"""The plugin contract: what plugins provide and what the core hands them.

Owns the hook specifications and the plugin manager (entry points, disabled plugins,
failures), the registry of every registered component with its spec checks, typed
hyperparameters and their coercion, the component interfaces (``Dataset``,
``Recommender``, the torch modules of a composed model), building a registered
recommender and its search space, and the experiment as pure values (which the
default-experiment hook returns). It imports only :mod:`crossbench.data` and the base
modules (``errors``, ``files``, ``progress``, ``version``); every later stage imports it.
"""
