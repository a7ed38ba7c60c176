"""latentmodels: classical latent-variable models by hand, every lecture claim checked numerically.

The models share one ELBO interface (``fit``, ``elbo``, ``log_likelihood``, ``posterior``,
``transform``, ``sample``), all in mean nats per sample. The README describes the modules and the
notebooks; every docstring states its formula and cites its source (book equation or paper).
"""

from .autoencoder import Autoencoder
from .chain import chain_data, run_chain  # noqa: E402  (the chain sits on top of the models)
from .datasets import dequantize, load_digits, load_idx, make_fa_data, make_ppca_data
from .elbo import ELBO, ELBODecreaseError, coordinate_ascent
from .fa import FactorAnalysis
from .gaussian import GaussianQ
from .ppca import PPCA, PCAResult, pca
from .vae import VAE
from .validation import ConvergenceWarning, NotFittedError
from .vi import VBPCA, MeanFieldGaussian, NormalGammaVI, mean_field_q

__version__ = "0.1.0"

__all__ = [
    "Autoencoder",
    "ELBO",
    "ELBODecreaseError",
    "ConvergenceWarning",
    "FactorAnalysis",
    "GaussianQ",
    "MeanFieldGaussian",
    "NormalGammaVI",
    "VAE",
    "VBPCA",
    "NotFittedError",
    "PCAResult",
    "PPCA",
    "chain_data",
    "coordinate_ascent",
    "dequantize",
    "load_digits",
    "load_idx",
    "make_fa_data",
    "make_ppca_data",
    "mean_field_q",
    "pca",
    "run_chain",
]
