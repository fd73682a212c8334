"""Looking inside a trained ViT (the paper's Section 4.5): attention rollout, mean attention distance,
position-embedding similarity and the principal components of the patch-embedding filters.

Each analysis is a pure function of tensors (``rollout``, ``distance``, ``pos_similarity``, ``filters``); attention
weights are read through the model's own ``capture_attention`` option (``attention``); ``report`` runs them all on a
model and writes the figures (``figures``); ``command`` is ``vit-study inspect``.
"""

NUM_SAMPLE_IMAGES = 8  # images drawn in the rollout figure and averaged over for attention distances
