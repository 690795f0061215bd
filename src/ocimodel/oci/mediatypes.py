"""Media types we read and write. One place, so a typo cannot hide in a module."""

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"
DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST_V2)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
# The Accept list for manifest requests. distribution answers 404 when the stored type is
# not listed (REGISTRY-FACTS.md), so every type we can parse is named.
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_V2, DOCKER_MANIFEST_LIST))

# The empty JSON object `{}` as a blob, used as the config of referrers.
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# CNCF ModelPack v1
MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODEL_LAYER_PREFIX = "application/vnd.cncf.model."
# The names ModelPack had before it moved to the CNCF; readers keep accepting them.
LEGACY_MODEL_ARTIFACT = "application/vnd.cnai.model.manifest.v1+json"
LEGACY_MODEL_CONFIG = "application/vnd.cnai.model.config.v1+json"
LEGACY_MODEL_LAYER_PREFIX = "application/vnd.cnai.model."
MODEL_ARTIFACT_TYPES = (MODEL_ARTIFACT, LEGACY_MODEL_ARTIFACT)
MODEL_CONFIG_TYPES = (MODEL_CONFIG, LEGACY_MODEL_CONFIG)


def model_layer(kind: str, packing: str = "raw") -> str:
    """``application/vnd.cncf.model.<kind>.v1.<packing>``, e.g. weight + raw."""
    return f"{MODEL_LAYER_PREFIX}{kind}.v1.{packing}"


def parse_model_layer(media_type: str) -> tuple[str, str] | None:
    """(kind, packing) of a ModelPack layer media type (current or legacy names), else None."""
    for prefix in (MODEL_LAYER_PREFIX, LEGACY_MODEL_LAYER_PREFIX):
        if media_type.startswith(prefix):
            rest = media_type[len(prefix):]
            kind, sep, packing = rest.rpartition(".v1.")
            if sep and kind and packing:
                return kind, packing
    return None


# Annotations
ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_VERSION = "org.opencontainers.image.version"
ANNOTATION_DESCRIPTION = "org.opencontainers.image.description"
ANNOTATION_LICENSES = "org.opencontainers.image.licenses"
ANNOTATION_AUTHORS = "org.opencontainers.image.authors"
ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_REVISION = "org.opencontainers.image.revision"
ANNOTATION_URL = "org.opencontainers.image.url"
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_FILE_METADATA = "org.cncf.model.file.metadata+json"
ANNOTATION_MEDIATYPE_UNTESTED = "org.cncf.model.file.mediatype.untested"
LEGACY_ANNOTATION_FILEPATH = "org.cnai.model.filepath"
LEGACY_ANNOTATION_FILE_METADATA = "org.cnai.model.file.metadata+json"
