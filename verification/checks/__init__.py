"""Importing this package registers every check, in report order."""

from verification.checks import (  # noqa: F401
    t1_generative,
    t2_one_shot,
    t3_contraction,
    t4_rank,
    t5_noisy,
    t6_pixel_latent,
    t7_full_chain,
    t8_overcomplete,
    t9_phase_transition,
    t10_calibration,
    t11_unsquared_loss,
    t12_posterior_calibration,
    t13_taesd_gluing,
)
