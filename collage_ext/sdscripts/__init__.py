"""The sd-scripts adapter: the only package that imports sd-scripts' ``library`` (and so torch).

``collage_ext.CollageDataset`` resolves to ``collage_ext.sdscripts.dataset.CollageDataset``.
"""
