"""The deep fixed effect: a DeText-style wide-and-deep network, in pure TensorFlow.

``text`` tokenizes, ``inputs`` turns rows into a resident ``Shard``, ``model`` is the
network, ``optim`` its optimizers, ``train`` the per-worker loop (given a ``Collective``),
and ``export`` writes and reads the SavedModel. Nothing here knows of Ray: the workers that
read the rows and run the loop are :mod:`raymix.engine.deep_service`, the all-reduce
:mod:`raymix.engine.collective`; :mod:`raymix.coordinates.deep` plugs it into coordinate
descent.
"""
