"""Broken Pascal VOC XML files: each error names the file, the object and the field."""
import numpy as np
import pytest
from PIL import Image

from projects.common.errors import BadInputError
from projects.simclr_loc.datasets.voc_xml import VOCAnnotationError, parse_voc_xml
from tests.test_simclr_loc.voc_fixture import voc_xml

CLASSES = ('cat', 'dog', 'car')
OBJ = '<object><name>cat</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>'


def _write(tmp_path, text, name='a.xml'):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return str(path)


@pytest.mark.parametrize('text, message', [
    (b'\xff\xd8\xff\xe0 a JPEG renamed .xml', r'a\.xml: malformed VOC XML'),
    ('', r'a\.xml: malformed VOC XML'),
    ('<root><object/></root>', r'a\.xml: root element is <root>, expected <annotation>'),
    ('<annotation><size><width>40</width><height>40</height></size><object><name> </name></object></annotation>',
     r'a\.xml: object 0: field <name> is missing or empty'),
    ('<annotation><size><width>40</width><height>40</height></size><object><name>cat</name></object></annotation>',
     r"a\.xml: object 0 \('cat'\): field <bndbox> is missing"),
    (f'<annotation><size><width>40</width><height>40</height></size>{OBJ}</annotation>'
     .replace('<name>cat</name>', '<name>cat</name><difficult>maybe</difficult>'),
     r"a\.xml: object 0 \('cat'\): field <difficult> is 'maybe', expected 0 or 1"),
    (f'<annotation><size><width>40</width><height>40</height></size>{OBJ.replace("<xmin>2</xmin>", "")}'
     '</annotation>', r"a\.xml: field <object 0 \('cat'\)/bndbox/xmin> is missing or empty"),
    (f'<annotation><size><width>40</width><height>40</height></size>{OBJ.replace(">3<", ">-4<")}</annotation>',
     r"a\.xml: object 0 \('cat'\): field <bndbox> is outside the image or inverted \(ymin=-4 < 0\)"),
    (f'<annotation>{OBJ}</annotation>', r'a\.xml: field <size> \(width/height\) is missing or 0'),
])
def test_malformed_voc_xml_names_file_and_field(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(VOCAnnotationError, match=message) as err:
        parse_voc_xml(path, CLASSES, img_path=str(tmp_path / 'nope.jpg'))
    assert isinstance(err.value, BadInputError)  # tools print it as a one-line error


def test_missing_size_is_read_from_the_image_when_it_exists(tmp_path):
    Image.fromarray(np.zeros((30, 45, 3), np.uint8)).save(tmp_path / 'a.jpg')
    path = _write(tmp_path, f'<annotation><size><width>0</width><height>0</height></size>{OBJ}</annotation>')
    out = parse_voc_xml(path, CLASSES, img_path=str(tmp_path / 'a.jpg'))
    assert (out['width'], out['height']) == (45.0, 30.0) and out['objects'][0]['bbox'] == [1.0, 2.0, 20.0, 30.0]


def test_unknown_class_lists_the_known_ones(tmp_path):
    path = _write(tmp_path, voc_xml('a.jpg', 50, 50, [dict(name='Cat', box=(1, 1, 9, 9))]))
    with pytest.raises(VOCAnnotationError, match=r"a\.xml: object 0: field <name> is 'Cat', not one of the 3 classes "
                                                 r"\(cat, dog, car\)"):
        parse_voc_xml(path, CLASSES)


def test_invalid_box_policy_is_checked(tmp_path):
    path = _write(tmp_path, voc_xml('a.jpg', 50, 50, [dict(name='cat', box=(1, 1, 9, 9))]))
    with pytest.raises(ValueError, match="invalid_boxes must be one of \\('error', 'clip', 'skip'\\), got 'drop'"):
        parse_voc_xml(path, CLASSES, invalid_boxes='drop')


def test_images_left_out_are_named_with_the_reason(tmp_path, caplog):
    """An XML without <object> is named as such, apart from the images with only "difficult" objects."""
    import projects.simclr_loc  # noqa: F401
    from projects.simclr_loc.datasets import VOCLocalizationDataset
    from tests.test_bad_input.helpers import LogCapture
    from tests.test_simclr_loc.voc_fixture import write_voc
    records = write_voc(tmp_path, n=5, splits=dict(trainval=range(5)))
    xml = [tmp_path / 'Annotations' / f'{r["img_id"]}.xml' for r in records]
    xml[1].write_text(voc_xml(f'{records[1]["img_id"]}.jpg', 96, 80, []))
    xml[3].write_text(voc_xml(f'{records[3]["img_id"]}.jpg', 96, 80, []))
    xml[2].write_text(voc_xml(f'{records[2]["img_id"]}.jpg', 96, 80, [dict(name='cat', box=(2, 2, 50, 50),
                                                                           difficult=1)]))
    xml[4].write_text(voc_xml(f'{records[4]["img_id"]}.jpg', 96, 80, [dict(name='cat', box=(2, 2, 150, 50))]))
    log = LogCapture(caplog)
    ds = VOCLocalizationDataset(data_root=str(tmp_path), split='trainval', invalid_boxes='skip')
    assert len(ds) == 1
    assert log.warnings == [
        f'VOCLocalizationDataset: 2 image(s) with no <object> in the annotation file left out: {xml[1]}, {xml[3]}',
        f"VOCLocalizationDataset: 1 image(s) whose every object was dropped by invalid_boxes='skip' left out: "
        f'{xml[4]}']
    assert f'VOCLocalizationDataset: 1 image(s) with only "difficult" objects left out: {xml[2]}' in log.text
    for path in xml[1:]:
        path.write_text(voc_xml('x.jpg', 96, 80, []))
    xml[0].write_text(voc_xml('x.jpg', 96, 80, []))
    with pytest.raises(ValueError, match=r'no image with a non-difficult object in .* \(left out: 5 with no '
                                         r'<object>\)'):
        VOCLocalizationDataset(data_root=str(tmp_path), split='trainval')
