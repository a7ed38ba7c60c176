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


def test_em_figure_reads_step_labels_and_shows_the_gap_on_a_log_inset():
    h = [-3.0, -2.5, -2.0, -1.9, -1.8, -1.78, -1.77]
    steps = ["E", "M", "E", "M", "E", "M", "E"]
    fig = plots.em_elbo(h, steps)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), h)
    inset = [a for a in ax.child_axes]
    assert len(inset) == 1 and inset[0].get_yscale() == "log"
    # the gaps after each M-step: log p(θ_new) (next E value) − L after the M-step
    np.testing.assert_allclose(inset[0].lines[0].get_ydata(), [0.5, 0.1, 0.01], rtol=1e-12)
    step_line = ax.lines[0].get_ydata()          # log p(x | θ) is the next E-step's value
    np.testing.assert_allclose(step_line, [-3.0, -2.0, -2.0, -1.8, -1.8, -1.77, -1.77])


def test_em_figure_refuses_labels_that_do_not_match():
    import pytest
    with pytest.raises(ValueError, match="steps"):
        plots.em_elbo([1.0, 2.0], ["E"])


def test_vbpca_figure_shows_every_component_even_switched_off_ones():
    class Fitted:   # a stand-in with the attributes the figure reads
        alpha_ = np.array([0.5, 3.0, 1e4, 1e4])
        W_ = np.array([[2.0, 0.5, 0.0, 0.0], [1.0, 0.2, 0.0, 0.0]])
        n_effective_ = 2
    fig = plots.vbpca_ard(Fitted())
    ax1, ax2 = fig.axes[:2]
    assert len(ax1.patches) == 4                       # a bar for every ⟨α⟩
    bars, markers = len(ax2.patches), len(ax2.lines[0].get_xdata())
    assert bars == 2 and markers == 2                  # the two zero columns are drawn as markers
    assert ax2.get_ylim()[0] > 0 and ax2.get_ylim()[0] < 0.04   # floor below the smallest norm 0.29


def test_fa_generative_draws_from_the_marginal():
    W, psi = np.array([1.5, 1.0]), np.array([0.15, 0.6])
    fig = plots.fa_generative(W, [0.0, 0.0], psi, n_samples=20_000, random_state=0)
    x = fig.samples
    C = np.outer(W, W) + np.diag(psi)
    se = np.sqrt((np.outer(C.diagonal(), C.diagonal()) + C ** 2) / len(x))   # s.e. of a sample covariance
    assert np.all(np.abs(np.cov(x.T) - C) < 4 * se)
    assert len(fig.axes) == 3


def test_em_bound_figure_draws_both_curves():
    t = np.linspace(-1, 2, 31)
    fig = plots.em_bound_theta(t, -(t - 1.5) ** 2, -(t - 1.0) ** 2 - 0.25 * t ** 2 + 0.0)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), -(t - 1.5) ** 2)


def test_chain_figure_is_not_zero_based_and_has_a_gap_panel():
    from types import SimpleNamespace as NS
    rows = [NS(name="A", test_log_lik=45.0, test_elbo=45.0), NS(name="B", test_log_lik=48.8, test_elbo=45.5)]
    fig = plots.chain_bars(NS(rows=rows, data="toy", n_components=2))
    ax, axg = fig.axes[:2]
    assert ax.get_xlim()[0] > 40                      # the bars start near the values, not at 0
    widths = sorted(p.get_width() for p in axg.patches)
    np.testing.assert_allclose(widths, [0.0, 3.3], atol=1e-12)   # the gaps log p − ELBO
    assert ax.get_legend() is not None


def test_chain_figure_puts_continuous_and_discrete_rows_on_one_bits_per_pixel_scale():
    from types import SimpleNamespace as NS
    rows = [NS(name="FA", test_log_lik=45.0, test_elbo=45.0, bits_per_pixel=3.07, space="dequantised"),
            NS(name="cat", test_log_lik=-95.0, test_elbo=-97.0, bits_per_pixel=2.14, space="discrete")]
    fig = plots.chain_bars(NS(rows=rows, data="toy", n_components=2, n_levels=17, n_features=64))
    ax = fig.axes[0]
    ends = sorted(p.get_x() + p.get_width() for p in ax.patches[:2])    # the log p(x) bars
    expected = sorted([-(45.0 - 64 * np.log(17)) / (64 * np.log(2)), 95.0 / (64 * np.log(2))])
    np.testing.assert_allclose(ends, expected, rtol=1e-12)
    assert "bits per pixel" in ax.get_xlabel()


def test_image_rows_draws_one_labelled_row_per_entry():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=(3, 16)), rng.uniform(size=(2, 16))
    fig = plots.image_rows({"a": a, "b": b}, title="t")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5                                  # 3 + 2 images, the empty cell hidden
    np.testing.assert_allclose(np.asarray(shown[4].images[0].get_array()), b[1].reshape(4, 4))
    assert [ax.get_ylabel() for ax in fig.axes[::3]] == ["a", "b"]


def test_vae_uncertainty_map_is_the_spread_of_decoded_posterior_draws():
    from latentmodels.vae import VAE
    rng = np.random.default_rng(1)
    X = (rng.uniform(size=(40, 16)) < 0.5).astype(float)
    vae = VAE(2, hidden=(8,), random_state=0, dtype=np.float64).fit(X, 2)
    fig = plots.vae_uncertainty(vae, X[:3], n_samples=50, random_state=3)
    draws = vae.reconstruct(X[:3], n_samples=50, random_state=3)
    sd_row = [ax.images[0].get_array() for ax in fig.axes[9:12]]     # the fourth row
    for k in range(3):
        np.testing.assert_allclose(np.asarray(sd_row[k]).ravel(), draws.std(axis=0)[k] / 0.5, rtol=1e-12)
    mean_row = [ax.images[0].get_array() for ax in fig.axes[6:9]]
    np.testing.assert_allclose(np.asarray(mean_row[0]).ravel(), draws.mean(axis=0)[0], rtol=1e-12)


def test_codes_vs_prior_and_training_curves_plot_what_they_are_given():
    Z = np.random.default_rng(2).standard_normal((50, 2))
    fig = plots.codes_vs_prior({"one": Z, "two": 2 * Z})
    np.testing.assert_allclose(fig.axes[1].collections[0].get_offsets(), 2 * Z)
    fig = plots.training_curves({"a": [1.0, 2.0, 3.0]})
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [1.0, 2.0, 3.0])
    grid = np.linspace(-1, 1, 5)
    fig = plots.density_fits(grid, grid ** 2, {"fit": np.abs(grid)}, samples=grid)
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), np.abs(grid))
