"""Media types and annotation keys we read and write. One place, so a typo cannot hide in a
module."""

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"
DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST_V2)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
# The Accept list for manifest requests. distribution answers 404 when the stored type is
# not listed (docs/registry-facts.md), so every type we can parse is named.
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


# ocimodel's own referrers: a lineage link (on the parent, naming the child) and an alias
# promotion record (on the model the alias now names).
LINEAGE_ARTIFACT = "application/vnd.ocimodel.lineage.v1+json"
PROMOTION_ARTIFACT = "application/vnd.ocimodel.promotion.v1+json"

# Sigstore bundles (stored as referrers) and what they carry.
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
# The same version under the spelling sigstore's protobuf specs also allow.
BUNDLE_MEDIA_TYPE_ALT = "application/vnd.dev.sigstore.bundle+json;version=0.3"
KNOWN_BUNDLE_MEDIA_TYPES = (BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE_ALT)
# Kyverno keeps referrers whose artifactType starts with this; so do we, so that a bundle
# of another version is reported (and refused) rather than silently passed over.
BUNDLE_ARTIFACT_PREFIX = "application/vnd.dev.sigstore.bundle"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


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

# Sigstore bundle referrers (what cosign and Kyverno write and read).
ANNOTATION_BUNDLE_CONTENT = "dev.sigstore.bundle.content"
ANNOTATION_BUNDLE_PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"
BUNDLE_CONTENT_DSSE = "dsse-envelope"

# ocimodel's own annotations, all under this prefix. The model card fields the ModelPack
# config has no place for (metadata/encoding.py says which field goes where):
OCIMODEL_ANNOTATION_PREFIX = "dev.ocimodel."
ANNOTATION_FRAMEWORK = "dev.ocimodel.framework"
ANNOTATION_TASK = "dev.ocimodel.task"
ANNOTATION_CODE_DIRTY = "dev.ocimodel.code.dirty"
ANNOTATION_TAGS = "dev.ocimodel.tags+json"
ANNOTATION_METRICS = "dev.ocimodel.metrics+json"
ANNOTATION_HYPERPARAMETERS = "dev.ocimodel.hyperparameters+json"
ANNOTATION_DATASETS = "dev.ocimodel.datasets+json"
ANNOTATION_BASE_MODELS = "dev.ocimodel.base-models+json"
ANNOTATION_FORMATS = "dev.ocimodel.formats+json"
ANNOTATION_ENVIRONMENT = "dev.ocimodel.environment+json"
# on a lineage link:
ANNOTATION_LINEAGE_CHILD = "dev.ocimodel.lineage.child"
ANNOTATION_LINEAGE_RELATION = "dev.ocimodel.lineage.relation"
# on a promotion record:
ANNOTATION_PROMOTION_ALIAS = "dev.ocimodel.promotion.alias"
ANNOTATION_PROMOTION_FROM = "dev.ocimodel.promotion.from"
ANNOTATION_PROMOTION_TO = "dev.ocimodel.promotion.to"
ANNOTATION_PROMOTION_ACTOR = "dev.ocimodel.promotion.actor"
ANNOTATION_PROMOTION_TIME = "dev.ocimodel.promotion.time"
ANNOTATION_PROMOTION_REASON = "dev.ocimodel.promotion.reason"
ANNOTATION_PROMOTION_ACTION = "dev.ocimodel.promotion.action"
ANNOTATION_PROMOTION_PREVIOUS = "dev.ocimodel.promotion.previous"  # the record this one follows
