"""Analysis of frozen backbones that does not depend on the pre-training method: attention statistics
(k-means, NMI, attention distance), k-NN and linear probes, feature extraction, figures.

Import the submodules you need (``from projects.analysis.knn import knn_classify``): this package imports
nothing by itself, so a module that needs only the k-NN code does not pull in k-means or matplotlib.
Definitions: docs/analysis.md.
"""
