import matplotlib.image as mpimg
import numpy as np

from latentmodels import plots
from latentmodels.cli import main


def test_figures_command_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["figures", "--out", str(out), "--quick"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"em_elbo.png", "ppca_sigma_limit.png", "mean_field_contours.png",
                     "vbpca_ard.png", "vae_latent_space.png", "vae_reconstructions.png",
                     "gradient_variance.png", "chain.png"}
    for p in out.iterdir():
        img = mpimg.imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 200
        assert img[..., :3].std() > 0.05       # not blank


def test_em_figure_plots_the_history_it_is_given():
    h = [-3.0, -2.5, -2.0, -1.9, -1.8]
    fig = plots.em_elbo(h)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), h)   # the ELBO line is the history
    assert ax.get_ylabel() == "mean nats per sample"
