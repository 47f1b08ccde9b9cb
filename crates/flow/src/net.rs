//! Circular conv nets: `Conv2d -> LeakyReLU -> ... -> Conv2d [-> Tanh]`, the tutorial's
//! `make_conv_net` (PyTorch `Sequential`, so the convolutions sit at indices 0, 2, 4, ...
//! and checkpoint names are `net.{2i}.weight` / `net.{2i}.bias`).
//!
//! The hidden activation is LeakyReLU (the tutorial's) or tanh ([`Activation`]). LeakyReLU
//! has a kink at 0, so a flow built from it is only piecewise smooth: its log-Jacobian and
//! the latent force of flow-HMC jump wherever a hidden unit changes sign, and leapfrog's
//! energy error then falls like `eps^2` per crossing instead of `eps^3` per step. Flows meant
//! for flow-HMC use tanh (smooth everywhere; the same state dict loads into a PyTorch
//! `Sequential` with `nn.Tanh` in place of `nn.LeakyReLU`).

use latflow_tensor::elementwise::Unary;
use latflow_tensor::layers::Conv2d;
use latflow_tensor::{conv_stack, Float, Tensor, Var};
use rand::Rng;

/// Architecture of a conv net.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Hidden channel counts, e.g. `[8, 8]`.
    pub hidden: Vec<usize>,
    /// Output channels.
    pub out_channels: usize,
    /// Odd kernel size.
    pub kernel: usize,
    /// Whether a tanh follows the last convolution.
    pub final_tanh: bool,
    /// The activation after every convolution but the last.
    pub activation: Activation,
}

/// The activation between a conv net's convolutions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `x` for `x > 0`, `slope x` otherwise (the tutorial's, PyTorch default slope 0.01).
    LeakyRelu(f64),
    /// `tanh x`: smooth, for flows whose forces matter (flow-HMC).
    Tanh,
}

impl Activation {
    /// The tutorial's LeakyReLU with PyTorch's default slope 0.01.
    pub const TUTORIAL: Activation = Activation::LeakyRelu(0.01);

    /// `leaky` (the tutorial's LeakyReLU, slope 0.01) or `tanh`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "leaky" => Ok(Activation::TUTORIAL),
            "tanh" => Ok(Activation::Tanh),
            _ => Err(format!("must be leaky or tanh, got '{s}'")),
        }
    }

    /// The name [`Activation::parse`] reads (`leaky` for any slope).
    pub fn name(&self) -> &'static str {
        match self {
            Activation::LeakyRelu(_) => "leaky",
            Activation::Tanh => "tanh",
        }
    }

    fn unary<T: Float>(&self) -> Unary<T> {
        match *self {
            Activation::LeakyRelu(slope) => Unary::LeakyRelu(T::from_f64(slope)),
            Activation::Tanh => Unary::Tanh,
        }
    }
}

/// A conv net's parameters (plain tensors).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNet<T: Float> {
    /// The architecture.
    pub config: ConvNetConfig,
    /// The convolutions in order.
    pub convs: Vec<Conv2d<T>>,
}

impl<T: Float> ConvNet<T> {
    /// PyTorch-initialized net.
    ///
    /// # Panics
    /// If the kernel is even or a size is zero.
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(config: ConvNetConfig, rng: &mut R) -> Self {
        let mut sizes = vec![config.in_channels];
        sizes.extend(&config.hidden);
        sizes.push(config.out_channels);
        let convs = sizes.windows(2).map(|w| Conv2d::new(w[0], w[1], config.kernel, rng)).collect();
        ConvNet { config, convs }
    }

    /// The parameters in forward order: weight and bias of each convolution.
    pub fn params(&self) -> Vec<&Tensor<T>> {
        self.convs.iter().flat_map(|c| [&c.weight, &c.bias]).collect()
    }

    /// The parameters' names inside the net (`net.0.weight`, `net.0.bias`, `net.2.weight`,
    /// ...: the convolutions of the PyTorch `Sequential` sit at even indices).
    pub fn param_names(&self) -> Vec<String> {
        (0..self.convs.len()).flat_map(|i| [format!("net.{}.weight", 2 * i), format!("net.{}.bias", 2 * i)]).collect()
    }

    /// Mutable parameters, in the order of [`ConvNet::params`].
    pub fn params_mut(&mut self) -> Vec<&mut Tensor<T>> {
        self.convs.iter_mut().flat_map(|c| [&mut c.weight, &mut c.bias]).collect()
    }

    /// Number of parameter tensors (2 per convolution).
    pub fn n_params(&self) -> usize {
        2 * self.convs.len()
    }

    /// Forward pass `x (N, Cin, H, W) -> (N, Cout, H, W)` with the parameters given as
    /// vars (in [`ConvNet::params`] order).
    pub fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> Var<T> {
        let n = self.convs.len();
        let acts: Vec<Option<Unary<T>>> = (0..n)
            .map(|i| {
                if i + 1 < n {
                    Some(self.config.activation.unary())
                } else if self.config.final_tanh {
                    Some(Unary::Tanh)
                } else {
                    None
                }
            })
            .collect();
        // a training shard on an AVX-512 CPU: the whole net as one node, its activations in
        // the samples-as-lanes layout (no transposes between the layers)
        if conv_stack::lanes_applies(x, p, &acts) {
            return conv_stack::conv_stack_lanes(x, p, &acts);
        }
        let mut h = x.clone();
        for (i, &act) in acts.iter().enumerate() {
            // conv + bias + activation as one op (the activation's derivative comes from its
            // output); a non-positive LeakyReLU slope takes the two-op path
            h = match act {
                Some(a) if !a.grad_from_output_ok() => h.conv2d(&p[2 * i], Some(&p[2 * i + 1])).unary(a),
                a => h.conv2d_act(&p[2 * i], Some(&p[2 * i + 1]), a),
            };
        }
        h
    }
}

/// Largest lattice extent of a flow (its masks alone take `layers x 3 x L^2` values).
pub const MAX_FLOW_L: usize = 512;
/// Most coupling layers, and most convolutions in one net.
pub const MAX_LAYERS: usize = 1024;
/// Most channels of one hidden convolution.
pub const MAX_CHANNELS: usize = 1024;
/// Most parameters of a flow's nets (400 MB in f32).
pub const MAX_PARAMS: f64 = 1e8;

/// Checks what every flow of conv-net couplings needs on an `l x l` lattice: an odd
/// kernel no wider than the lattice, at least one layer, positive hidden channel counts.
/// The error names the bad value.
pub fn check_stack(l: usize, kernel: usize, layers: usize, hidden: &[usize]) -> Result<(), String> {
    if l > MAX_FLOW_L {
        return Err(format!("lattice size L = {l} is above the flows' limit of {MAX_FLOW_L}"));
    }
    if layers > MAX_LAYERS {
        return Err(format!("{layers} layers is above the limit of {MAX_LAYERS}"));
    }
    if hidden.len() > MAX_LAYERS || hidden.iter().any(|&h| h > MAX_CHANNELS) {
        return Err(format!(
            "hidden channels {hidden:?}: at most {MAX_LAYERS} convolutions of at most {MAX_CHANNELS} channels"
        ));
    }
    if kernel.is_multiple_of(2) {
        return Err(format!("kernel size {kernel} must be odd"));
    }
    // parameters of the coupling nets (input and output channels are few), before any is allocated
    let mut chans = vec![4usize];
    chans.extend(hidden);
    chans.push(4);
    let per_layer: f64 = chans.windows(2).map(|w| (w[0] * w[1]) as f64).sum::<f64>() * (kernel * kernel) as f64;
    if per_layer * layers as f64 > MAX_PARAMS {
        return Err(format!(
            "{layers} layers of nets with hidden channels {hidden:?} and kernel {kernel} would hold about {:.1e} \
             parameters (limit {MAX_PARAMS:.0e})",
            per_layer * layers as f64
        ));
    }
    if kernel > l {
        return Err(format!("kernel size {kernel} is wider than the {l}x{l} lattice"));
    }
    if layers == 0 {
        return Err("the flow needs at least one layer".into());
    }
    if hidden.contains(&0) {
        return Err(format!("hidden channel counts must be positive, got {hidden:?}"));
    }
    Ok(())
}
