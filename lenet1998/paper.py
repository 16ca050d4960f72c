"""The paper's own numbers that our results are compared with.

Paper: Fig. 5 (digitized, about +-0.05%), Fig. 6 (digitized), Fig. 9 and Sec. III-C (test
error in %, "the uncertainty in the quoted error rates is about 0.1%"). Digitized values are
approximate; Fig. 5 plots no separate points for passes 11 and 13.
"""

# Fig. 5: pass -> (test error %, training error % measured on the fly).
FIG5 = {
    1: (2.67, 4.89), 2: (2.24, 3.07), 3: (1.47, 1.75), 4: (1.42, 1.52), 5: (1.42, 1.21),
    6: (1.08, 0.90), 7: (1.03, 0.77), 8: (1.05, 0.69), 9: (0.97, 0.56), 10: (0.95, 0.49),
    12: (0.97, 0.44), 14: (0.95, 0.38), 15: (0.95, 0.38), 16: (0.95, 0.38), 17: (0.95, 0.38),
    18: (0.95, 0.35), 19: (0.95, 0.35), 20: (0.95, 0.35),
}

# Fig. 6: training-set size -> (test error %, training error %).
FIG6 = {15000: (1.68, 0.05), 30000: (1.14, 0.31), 60000: (0.94, 0.35)}

# Fig. 9 and Sec. III-C.1: the linear classifier (a weighted sum of the 28x28 pixels per class,
# 7,850 free parameters) has 12.0% test error. A run of ours "trains" when its final test error beats it.
LINEAR_CLASSIFIER_ERROR = 12.0

# Fig. 9, the LeNet rows: test error %.
FIG9_LENET = {
    "[16x16] LeNet-1": 1.7, "LeNet-4": 1.1, "LeNet-4 / Local": 1.1, "LeNet-4 / K-NN": 1.1,
    "LeNet-5": 0.95, "[dist] LeNet-5": 0.8, "[dist] Boosted LeNet-4": 0.7,
}
