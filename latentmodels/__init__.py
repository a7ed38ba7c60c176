"""latentmodels: classical latent-variable models by hand, every lecture claim checked numerically.

The models share one ELBO interface (``fit``, ``elbo``, ``log_likelihood``, ``posterior``,
``transform``, ``sample``), all in mean nats per sample. The README describes the modules and the
notebooks; every docstring states its formula and cites its source (book equation or paper).
"""

from . import blur, flows, likelihoods, rotations  # noqa: F401  (modules of their own idea)
from .acceleration import Squarem
from .autoencoder import Autoencoder
from .chain import chain_data, run_chain  # noqa: E402  (the chain sits on top of the models)
from .datasets import binarize, dequantize, load_digits, load_idx, make_fa_data, make_ppca_data
from .diagnostics import choose_n_components, fit_statistics, minka_log_evidence, summary
from .elbo import ELBO, ELBODecreaseError, coordinate_ascent
from .fa import FactorAnalysis
from .flows import FlowStack, IAFStep, PlanarFlow
from .gaussian import GaussianQ
from .linear_gaussian import LinearGaussianModel
from .missing import fit_missing, impute, observed_log_likelihood
from .ppca import PPCA, PCAResult, pca
from .rotations import Rotation, factor_scores, rotate
from .statistics import SufficientStatistics, sufficient_statistics
from .vae import VAE
from .validation import ConvergenceWarning, Estimator, NotFittedError
from .vbpca import VBPCA
from .vi import MeanFieldGaussian, NormalGammaVI, mean_field_q

__version__ = "0.2.0"

__all__ = [
    "Autoencoder",
    "ConvergenceWarning",
    "ELBO",
    "ELBODecreaseError",
    "Estimator",
    "FactorAnalysis",
    "FlowStack",
    "GaussianQ",
    "IAFStep",
    "LinearGaussianModel",
    "MeanFieldGaussian",
    "NormalGammaVI",
    "NotFittedError",
    "PCAResult",
    "PPCA",
    "PlanarFlow",
    "Rotation",
    "Squarem",
    "SufficientStatistics",
    "VAE",
    "VBPCA",
    "binarize",
    "blur",
    "chain_data",
    "choose_n_components",
    "coordinate_ascent",
    "dequantize",
    "factor_scores",
    "fit_missing",
    "fit_statistics",
    "flows",
    "impute",
    "likelihoods",
    "load_digits",
    "load_idx",
    "make_fa_data",
    "make_ppca_data",
    "mean_field_q",
    "minka_log_evidence",
    "observed_log_likelihood",
    "pca",
    "rotate",
    "rotations",
    "run_chain",
    "sufficient_statistics",
    "summary",
]
