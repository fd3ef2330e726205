"""Test-time padding to the detector's fixed frame."""
from mmdet.datasets.transforms import Pad
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PadToFrame(Pad):
    """mmdet's ``Pad`` to a fixed size that keeps ``img_shape`` the image's own extent.

    mmcv's ``Pad`` overwrites ``img_shape`` with the padded shape, so predictions are clipped to the frame
    instead of the image: boxes can then lie wholly in the padding band, and mmdet's CPU mask pasting fails on
    an image whose boxes all lie there (``upper bound and lower bound inconsistent with step sign``). Training
    batches keep ``img_shape`` too (``BatchFixedSizePad`` only sets ``pad_shape``), so both sides agree.
    """

    def transform(self, results: dict) -> dict:
        img_shape = results['img_shape']
        results = super().transform(results)
        results['img_shape'] = img_shape
        return results
