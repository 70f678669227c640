"""sCM (Lu & Song 2024) in ComfyUI: a 1-4 step consistency SAMPLER, its SIGMAS in the connected
model's own sigma space, and a model-sampling patch for networks trained natively in TrigFlow."""

import math

import torch
import comfy.model_sampling
import comfy.samplers
from comfy_api.latest import io

from ..samplers.scm import MAX_STEPS, SIGMA_MAX, T_MIDS_SCM, model_sampling_renoise, sample_scm, scm_sigmas
from ..samplers.trigflow import SIGMA_DATA
from .validation import Node

CATEGORY = "noise-search/samplers"


def scm_sampler_function(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """``sample_scm`` with the model's own re-noising (``model_sampling.noise_scaling``), as a k-diffusion sampler."""
    ms = model.inner_model.inner_model.model_sampling
    return sample_scm(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                      noise_sampler=noise_sampler, renoise=model_sampling_renoise(ms))


class SCMSampler(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SCMSampler_NoiseSearch",
            display_name="sCM 2-Step Sampler",
            category=CATEGORY,
            description="Multistep consistency sampling (sCM, Lu & Song 2024): per sigma, predict x0; re-noise it to the next sigma "
                        "with fresh noise through the model's own noise scaling; the last step returns x0. Use with sCM Sigmas "
                        "(2 steps = 2 NFE) in SamplerCustomAdvanced, or as the generator of a search node.",
            inputs=[],
            outputs=[io.Sampler.Output(display_name="SAMPLER", tooltip="The sCM sampler (its re-noise is seeded from the NOISE seed).")],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(comfy.samplers.KSAMPLER(scm_sampler_function))


def sigma_space(ms):
    """(space, model_sigmas) of a ComfyUI model_sampling for ``scm_sigmas``."""
    if isinstance(ms, comfy.model_sampling.CONST):
        return "flow", None
    if isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete):
        return "discrete", ms.sigmas.detach().double().cpu()
    return "edm", None


class SCMSigmas(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SCMSigmas_NoiseSearch",
            display_name="sCM Sigmas",
            category=CATEGORY,
            description="Sigmas for the sCM sampler from TrigFlow times [t_max, t_mid, ..., 0], converted into the connected "
                        "MODEL's sigma space through the EDM-equivalent sigma = sigma_data tan t (EDM / discrete: that sigma, "
                        "snapped to a discrete model's table; flow: s = sigma / (1 + sigma)). Paper defaults: t_max = "
                        "atan(80 / 0.5), t_mid = 1.1.",
            inputs=[
                io.Model.Input("model", tooltip="The model whose sigma space the sigmas are given in."),
                io.Int.Input("steps", default=2, min=1, max=MAX_STEPS, tooltip="Consistency steps = model evaluations (1 to 4)."),
                io.Float.Input("t_max", default=0.0, min=0.0, max=math.pi / 2, step=0.0001, round=False,
                               tooltip="First TrigFlow time; 0 = atan(80 / sigma_data), the paper's EDM start (1.5645 when sigma_data is 0 or 0.5). "
                                       "SANA-Sprint uses 1.5708."),
                io.Float.Input("t_mid", default=1.1, min=0.0, max=math.pi / 2, step=0.01, round=False,
                               tooltip="Intermediate time of the 2-step sampler (paper 1.1; SANA-Sprint 1.3); 3-4 steps continue "
                                       "with 0.8 and 0.5. 0 = those defaults."),
                io.Float.Input("sigma_data", default=0.0, min=0.0, max=100.0, step=0.01, round=False,
                               tooltip="Data standard deviation in the model's latent units (TrigFlow sigma_d), used in every "
                                       "model family: sigma = sigma_data tan t. 0 = the family's usual value: 0.5 for "
                                       "SD1.5 / SDXL / EDM models (the sCM paper's), 1.0 for flow models (SD3, FLUX, Wan; "
                                       "SANA-Sprint's time map)."),
            ],
            outputs=[io.Sigmas.Output(display_name="SIGMAS", tooltip="steps + 1 descending sigmas ending in 0.")],
        )

    @classmethod
    def execute(cls, model, steps, t_max, t_mid, sigma_data) -> io.NodeOutput:
        ms = model.get_model_object("model_sampling")
        space, table = sigma_space(ms)
        mids = None
        if t_mid > 0 and steps > 1:
            mids = [float(t_mid)] + list(T_MIDS_SCM[int(steps)][1:])
        sig = scm_sigmas(int(steps), sigma_data=float(sigma_data) if sigma_data > 0 else None, t_max=float(t_max) if t_max > 0 else None, t_mid=mids,
                         sigma_max=SIGMA_MAX, space=space, model_sigmas=table)
        if space == "edm":
            top = float(ms.sigma_max)
            if float(sig[0]) > top * (1 + 1e-6):
                sig[0] = top
        return io.NodeOutput(sig.float())


def trigflow_model_sampling(sigma_data, sigma_max, time_scale):
    """V-prediction model sampling whose network time is the TrigFlow time atan(sigma / sigma_d) x ``time_scale``."""

    class ModelSamplingTrigFlow(comfy.model_sampling.ModelSamplingContinuousEDM, comfy.model_sampling.V_PREDICTION):
        def timestep(self, sigma):
            return torch.atan(sigma / self.sigma_data) * time_scale

        def sigma(self, timestep):
            return torch.tan(timestep / time_scale) * self.sigma_data

        def percent_to_sigma(self, percent):
            if percent <= 0.0:
                return 999999999.9
            if percent >= 1.0:
                return 0.0
            t = math.atan(float(self.sigma_max) / self.sigma_data) * (1.0 - percent)
            return math.tan(t) * self.sigma_data

    ms = ModelSamplingTrigFlow()
    ms.set_parameters(sigma_min=sigma_data * math.tan(0.002), sigma_max=sigma_max, sigma_data=sigma_data)
    return ms


class TrigFlowModelSampling(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TrigFlowModelSampling_NoiseSearch",
            display_name="TrigFlow Model Sampling",
            category=CATEGORY,
            description="Patch a model trained natively in TrigFlow (x_t = cos t x0 + sin t z, network F(x_t / sigma_d, t)): "
                        "V-prediction with sigma_data = sigma_d and network time atan(sigma / sigma_d), so ComfyUI's EDM-form "
                        "samplers and the sCM sampler drive it exactly (sigma = sigma_d tan t).",
            inputs=[
                io.Model.Input("model", tooltip="A TrigFlow-trained model (e.g. an sCM / sCD student or its TrigFlow teacher)."),
                io.Float.Input("sigma_data", default=SIGMA_DATA, min=0.001, max=100.0, step=0.01, round=False,
                               tooltip="The model's sigma_d (0.5 in the sCM paper)."),
                io.Float.Input("sigma_max", default=SIGMA_MAX, min=0.01, max=10000.0, step=0.1, round=False,
                               tooltip="Largest sigma for schedulers (80 = t_max 1.5645 at sigma_d 0.5)."),
                io.Float.Input("time_scale", default=1.0, min=0.0001, max=10000.0, step=0.01, round=False,
                               tooltip="Multiplier of the network's time input c_noise(t) = time_scale * t (1 for the paper's c_noise(t) = t)."),
            ],
            outputs=[io.Model.Output(display_name="MODEL", tooltip="A clone of the model with TrigFlow model sampling.")],
        )

    @classmethod
    def execute(cls, model, sigma_data, sigma_max, time_scale) -> io.NodeOutput:
        m = model.clone()
        m.add_object_patch("model_sampling", trigflow_model_sampling(float(sigma_data), float(sigma_max), float(time_scale)))
        return io.NodeOutput(m)


NODES = [SCMSampler, SCMSigmas, TrigFlowModelSampling]
