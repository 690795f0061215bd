"""The CNCF ModelPack v1 config as pydantic models.

The ModelPack schema forbids properties it does not define at every level, so these models
forbid them too: nothing of ours may go in the config (our metadata rides in manifest
annotations). ``schemas/modelpack-config.schema.json`` is generated from them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Modality = Literal["text", "image", "audio", "video", "embedding", "other"]


class ModelCapabilities(_Strict):
    input_types: list[Modality] | None = Field(default=None, alias="inputTypes")
    output_types: list[Modality] | None = Field(default=None, alias="outputTypes")
    knowledge_cutoff: datetime | None = Field(default=None, alias="knowledgeCutoff")
    reasoning: bool | None = None
    tool_usage: bool | None = Field(default=None, alias="toolUsage")
    reward: bool | None = None
    languages: list[str] | None = Field(default=None, json_schema_extra={"items": {"pattern": "^[a-z]{2}$"}})


class ModelDescriptor(_Strict):
    created_at: datetime | None = Field(default=None, alias="createdAt")
    authors: list[str] | None = None
    family: str | None = None
    name: str | None = Field(default=None, min_length=1)
    doc_url: str | None = Field(default=None, alias="docURL")
    source_url: str | None = Field(default=None, alias="sourceURL")
    datasets_url: list[str] | None = Field(default=None, alias="datasetsURL")
    version: str | None = None
    revision: str | None = None
    vendor: str | None = None
    licenses: list[str] | None = None
    title: str | None = None
    description: str | None = None


class ModelSettings(_Strict):
    """The ``config`` object of the ModelPack config (named apart from pydantic's config)."""

    architecture: str | None = None
    format: str | None = None
    param_size: str | None = Field(default=None, alias="paramSize")
    precision: str | None = None
    quantization: str | None = None
    capabilities: ModelCapabilities | None = None


class ModelFS(_Strict):
    type: Literal["layers"] = "layers"
    diff_ids: list[str] = Field(alias="diffIds", min_length=1)


class ModelConfig(_Strict):
    descriptor: ModelDescriptor
    config: ModelSettings
    modelfs: ModelFS

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()
