"""The FTCP variational autoencoder in Keras 3, as released (``model.py`` of PV-Lab/FTCP).

- Encoder: Conv1D 32/64/128 channels, kernels 5/3/3, strides 2/2/1, same padding, each followed by
  BatchNorm and LeakyReLU(0.2); Flatten; Dense 1024 (sigmoid); z_mean and z_log_var (Dense 256, linear).
- Decoder: Dense 128 · R/4 (ReLU), reshape to (R/4, 1, 128), BatchNorm, Conv2DTranspose 64 (3x1, stride 1),
  BatchNorm, ReLU, Conv2DTranspose 32 (3x1, stride 2), BatchNorm, ReLU, Conv2DTranspose C (5x1, stride 2),
  sigmoid: an (R, C) matrix in the scaled space.
- Property branch on z_mean: ReLU, Dense 128 (ReLU), Dense 32 (ReLU), Dense n_props (sigmoid), on
  min-max-scaled targets.
- Loss, as released: Σ_batch Σ (x - x̂)² + 2 · mean_batch[-½ mean_latent(1 + log σ² - μ² - σ²)]
  + 10 · Σ_batch Σ (y - ŷ)² (the reconstruction and property terms are sums over the batch, the KL term
  a mean over latent dimensions).
"""

from __future__ import annotations

from .backend import keras_module

keras = keras_module()
layers = keras.layers
ops = keras.ops

LATENT_DIM = 256
MAX_FILTERS = 128
KERNELS = (5, 3, 3)
STRIDES = (2, 2, 1)


def _encoder(n_rows: int, n_cols: int, latent_dim: int) -> keras.Model:
    inp = keras.Input(shape=(n_rows, n_cols))
    x = inp
    for filters, k, s in zip((MAX_FILTERS // 4, MAX_FILTERS // 2, MAX_FILTERS), KERNELS, STRIDES, strict=True):
        x = layers.Conv1D(filters, k, strides=s, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(negative_slope=0.2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(1024, activation="sigmoid")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    return keras.Model(inp, [z_mean, z_log_var], name="encoder")


def _decoder(n_rows: int, n_cols: int, latent_dim: int) -> keras.Model:
    map_size = n_rows // (STRIDES[0] * STRIDES[1] * STRIDES[2])
    inp = keras.Input(shape=(latent_dim,))
    x = layers.Dense(MAX_FILTERS * map_size, activation="relu")(inp)
    x = layers.Reshape((map_size, 1, MAX_FILTERS))(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2DTranspose(MAX_FILTERS // 2, (KERNELS[2], 1), strides=(STRIDES[2], 1), padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2DTranspose(MAX_FILTERS // 4, (KERNELS[1], 1), strides=(STRIDES[1], 1), padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2DTranspose(n_cols, (KERNELS[0], 1), strides=(STRIDES[0], 1), padding="same")(x)
    x = layers.Activation("sigmoid")(x)
    out = layers.Reshape((n_rows, n_cols))(x)
    return keras.Model(inp, out, name="decoder")


def _regression(latent_dim: int, n_props: int) -> keras.Model:
    inp = keras.Input(shape=(latent_dim,))
    x = layers.Activation("relu")(inp)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dense(32, activation="relu")(x)
    out = layers.Dense(n_props, activation="sigmoid")(x)
    return keras.Model(inp, out, name="property_branch")


class FTCPVAE(keras.Model):
    """Encoder, decoder and property branch; ``fit(X, Y)`` with X (N, R, C) and Y (N, n_props) scaled to [0, 1]."""

    def __init__(self, n_rows: int = 240, n_cols: int = 63, n_props: int = 2, latent_dim: int = LATENT_DIM,
                 coeff_kl: float = 2.0, coeff_prop: float = 10.0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if n_rows % 4:
            raise ValueError(f"n_rows must be a multiple of 4 (got {n_rows})")
        self.n_rows, self.n_cols, self.n_props, self.latent_dim = n_rows, n_cols, n_props, latent_dim
        self.coeff_kl, self.coeff_prop = coeff_kl, coeff_prop
        self.encoder = _encoder(n_rows, n_cols, latent_dim)
        self.decoder = _decoder(n_rows, n_cols, latent_dim)
        self.regression = _regression(latent_dim, n_props)
        self.noise = keras.random.SeedGenerator(seed)

    def reseed(self, seed: int, counter: int = 0) -> None:
        """Set the reparameterisation noise stream (training restarts each epoch from (seed, epoch))."""
        self.noise.state.assign(ops.convert_to_tensor([seed, counter], dtype="int32"))

    def call(self, x, training=False):
        z_mean, z_log_var = self.encoder(x, training=training)
        eps = keras.random.normal(ops.shape(z_mean), seed=self.noise)
        z = z_mean + ops.exp(z_log_var / 2.0) * eps
        return {
            "recon": self.decoder(z, training=training),
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "props": self.regression(z_mean, training=training),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        recon = ops.sum(ops.square(x - y_pred["recon"]))
        zm, zlv = y_pred["z_mean"], y_pred["z_log_var"]
        kl = -0.5 * ops.mean(1.0 + zlv - ops.square(zm) - ops.exp(zlv), axis=-1)
        prop = ops.sum(ops.square(y - y_pred["props"]))
        return recon + self.coeff_kl * ops.mean(kl) + self.coeff_prop * prop

    def encode(self, x):
        """z_mean of scaled matrices (no sampling)."""
        return self.encoder(x, training=False)[0]

    def decode(self, z):
        return self.decoder(z, training=False)

    def predict_properties(self, x):
        """Scaled property predictions from z_mean."""
        return self.regression(self.encode(x), training=False)
