"""The paper's own numbers, quoted for comparison (the only numbers the report does not compute).

From *MultiModelOptimizer* (Tables 1-2, the steps-to-90% table and Fig. 7). The
paper's method is the ``type_shape`` grouping, ``mmo-type-shape`` here.
"""

from __future__ import annotations

# Table 1: synthetic set, validation accuracy (%) of bert, gpt2, roberta.
TABLE1 = {
    "mmo-type-shape": (100.0, 100.0, 100.0),
    "no-sharing": (86.2, 91.4, 88.9),
    "no-sync": (94.7, 96.1, 95.3),
    "no-adaptive-lr": (92.3, 94.5, 93.8),
    "independent": (82.4, 87.5, 84.2),
}
# Table 2: task -> model -> (independent, mmo) in %; SST-2 accuracy, NER F1, QA F1.
TABLE2 = {
    "sst2": {"bert": (89.2, 90.7), "gpt2": (87.8, 89.5), "roberta": (90.4, 92.1)},
    "ner": {"bert": (85.6, 86.8), "gpt2": (82.3, 84.2), "roberta": (86.9, 88.4)},
    "qa": {"bert": (78.3, 79.6), "gpt2": (76.1, 78.2), "roberta": (80.2, 81.9)},
}
# Optimizer updates to 90% SST-2 accuracy: model -> (independent, mmo).
STEPS90 = {"bert": (846, 612), "gpt2": (921, 588), "roberta": (753, 539)}
# Fig. 7: compute normalised to the paper's method.
COMPUTE = {"sequential independent": 3.0, "parallel independent": 1.2, "mmo-type-shape": 1.0}
# Ablated components: method without it -> what it removes.
COMPONENTS = {
    "no-sharing": "gradient sharing",
    "no-sync": "parameter synchronisation",
    "no-adaptive-lr": "adaptive learning rates",
}
