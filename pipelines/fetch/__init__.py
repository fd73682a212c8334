"""Standard datasets fetched from their publishers into the ImageFolder layout every other command reads.

``vit-study download cifar10 --out DIR`` is how a machine without a local copy gets the README's study data.
"""
