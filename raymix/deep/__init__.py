"""The deep fixed effect: a DeText-style wide-and-deep network, trained data-parallel.

``text`` tokenizes, ``inputs`` reads and shards rows with Ray Data, ``model`` is the network,
``optim`` its optimizers, ``train`` the per-worker loop, ``collective`` the gradient
all-reduce (local, TensorFlow collectives, Horovod), ``service`` runs the workers on Ray and
``export`` writes and reads the SavedModel. :mod:`raymix.coordinates.deep` plugs it into
coordinate descent.
"""
