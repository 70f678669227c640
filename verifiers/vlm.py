"""Optional local vision-language grader on transformers (e.g. Qwen2-VL): score = P(yes) / (P(yes) + P(no)) from the
last-token logits of "Does this image show {prompt}? Answer yes or no." (one forward, no generation).

P(yes) sums the probabilities of the "Yes"/"yes" tokens (likewise "No"/"no"), so the score is
``sigmoid(logsumexp(yes logits) - logsumexp(no logits))`` in 0..1. Qwen2-VL's forward needs ``mm_token_type_ids``
(text 0, image 1) for its multimodal RoPE: the 5.x processor returns it; when a processor does not, it is built
from the image token id.
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
import torch

from . import files
from .base import Verifier, to_uint8

if TYPE_CHECKING:  # the types only (PIL and transformers are imported where they are needed)
    from PIL import Image
    from transformers import PreTrainedTokenizerBase

__all__ = ['SOURCE', 'EXPECTED', 'QUESTION', 'to_pil', 'ImageTokenProcessor', 'VLMGraderVerifier', 'load_vlm_grader']

SOURCE = "huggingface.co/Qwen/Qwen2-VL-2B-Instruct (or another image-text-to-text model saved with save_pretrained)"
EXPECTED = ["config.json", "model.safetensors", "tokenizer.json (or vocab.json + merges.txt)", "preprocessor_config.json",
            "chat_template.json or chat_template.jinja (optional)"]
QUESTION = "Does this image show {prompt}? Answer yes or no."


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """IMAGE -> PIL images with the pixels of the PNG ComfyUI's SaveImage writes (``base.to_uint8``), as the
    original VLM scorers read a saved file."""
    from PIL import Image

    x = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in x]


class ImageTokenProcessor:
    """Stand-in for a Qwen2-VL-style processor built from the image processor and the tokenizer alone (the 5.x
    ``Qwen2VLProcessor`` needs a video processor, which needs torchvision): each image token in the text is
    expanded to ``prod(image_grid_thw) // merge_size**2`` copies, and ``mm_token_type_ids`` marks them 1."""

    def __init__(self, image_processor: Any, tokenizer: PreTrainedTokenizerBase, image_token: str = "<|image_pad|>",
                 chat_template: Optional[str] = None) -> None:
        self.image_processor, self.tokenizer, self.image_token = image_processor, tokenizer, image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)

    def apply_chat_template(self, messages: list[dict], **kw: Any) -> Any:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, **kw)

    def __call__(self, text: Sequence[str], images: Sequence[Image.Image], return_tensors: str = "pt",
                 padding: Union[bool, str] = True, **kw: Any) -> dict:
        vis = self.image_processor(images=images, return_tensors="pt", **kw)
        merge = getattr(self.image_processor, "merge_size", 1) ** 2
        counts = (vis["image_grid_thw"].prod(-1) // merge).tolist()
        out, k = [], 0
        for t in text:
            parts = t.split(self.image_token)
            s = parts[0]
            for p in parts[1:]:
                s += self.image_token * int(counts[k]) + p
                k += 1
            out.append(s)
        enc = self.tokenizer(out, return_tensors="pt", padding=padding)
        enc = dict(enc)
        enc["mm_token_type_ids"] = (enc["input_ids"] == self.image_token_id).int()
        enc.update(vis)
        return enc


class VLMGraderVerifier(Verifier):
    name = "vlm_grader"
    condition = "prompt"

    def __init__(self, model: torch.nn.Module, processor: Any, question: str = QUESTION, yes: Sequence[str] = ("Yes", "yes"),
                 no: Sequence[str] = ("No", "no"), weights_id: str = "", device: Union[str, torch.device] = "cpu",
                 dtype: torch.dtype = torch.float32, batch_size: int = 4, max_pixels: Optional[int] = None) -> None:
        super().__init__(weights_id, device, dtype, batch_size, 0)
        if "{prompt}" not in question:
            raise ValueError(f"question must contain '{{prompt}}', got {question!r}")
        self.model = model.to(self.device, dtype).eval()
        self.processor, self.question, self.max_pixels = processor, question, max_pixels
        tok = getattr(processor, "tokenizer", processor)
        self.yes_ids = self._first_tokens(tok, yes)
        self.no_ids = self._first_tokens(tok, no)
        if set(self.yes_ids) & set(self.no_ids):
            raise ValueError(f"the yes words {yes} and no words {no} share first tokens {sorted(set(self.yes_ids) & set(self.no_ids))}")
        self._fwd_params = set(inspect.signature(self.model.forward).parameters)

    @staticmethod
    def _first_tokens(tok, words):
        ids = []
        for w in words:
            t = tok.encode(w, add_special_tokens=False)
            if not t:
                raise ValueError(f"the tokenizer maps {w!r} to no token")
            if t[0] not in ids:
                ids.append(t[0])
        return ids

    def text_for(self, prompt: str) -> str:
        q = self.question.format(prompt=prompt)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image = getattr(self.processor, "image_token", "<|image_pad|>")
        return (f"<|im_start|>user\n<|vision_start|>{image}<|vision_end|>{q}<|im_end|>\n<|im_start|>assistant\n")

    @torch.no_grad()
    def _score(self, images, conditions, early):
        texts = [self.text_for(p) for p in conditions]
        kw = {"max_pixels": self.max_pixels} if self.max_pixels else {}
        inputs = self.processor(text=texts, images=to_pil(images), return_tensors="pt", padding=True, **kw)
        inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        if "mm_token_type_ids" in self._fwd_params and "mm_token_type_ids" not in inputs:
            img_id = getattr(self.model.config, "image_token_id", None)
            inputs["mm_token_type_ids"] = (inputs["input_ids"] == img_id).int()
        inputs = {k: v for k, v in inputs.items() if k in self._fwd_params}
        logits = self.model(**inputs).logits.float()
        mask = inputs["attention_mask"]
        pos = torch.arange(mask.shape[1], device=mask.device)
        last = (mask * pos).argmax(1)  # last attended position (left or right padding)
        lt = logits[torch.arange(logits.shape[0]), last]
        ly = lt[:, self.yes_ids].logsumexp(-1)
        ln = lt[:, self.no_ids].logsumexp(-1)
        return torch.sigmoid(ly - ln)


def load_vlm_grader(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                    dtype: torch.dtype = torch.float32, question: str = QUESTION, batch_size: int = 4,
                    max_pixels: Optional[int] = None, **_: Any) -> VLMGraderVerifier:
    """Layout: an image-text-to-text model folder saved with ``save_pretrained`` (model + processor + tokenizer)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    name = "vlm_grader"
    folder = files.as_folder(path, name, EXPECTED, SOURCE)
    files.check_hf_folder(folder, name, SOURCE, need_tokenizer=True, extra_expected=EXPECTED[3:])
    if not any(os.path.isfile(os.path.join(folder, n)) for n in ("preprocessor_config.json", "processor_config.json")):
        raise files.missing_error(name, "preprocessor_config.json (or processor_config.json)", folder, EXPECTED, SOURCE)
    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except Exception:  # noqa: BLE001 - e.g. Qwen2VLProcessor needs torchvision for its video processor
        from transformers import AutoImageProcessor, AutoTokenizer

        processor = ImageTokenProcessor(files.from_pretrained(AutoImageProcessor, folder, name, SOURCE),
                                        files.from_pretrained(AutoTokenizer, folder, name, SOURCE))
    model = files.from_pretrained(AutoModelForImageTextToText, folder, name, SOURCE)
    return VLMGraderVerifier(model, processor, question=question, weights_id=folder, device=device, dtype=dtype, batch_size=batch_size,
                             max_pixels=max_pixels)
