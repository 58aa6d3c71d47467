"""User-facing configuration (pydantic, the edge of the library): ``ModelConfig`` for one endpoint,
``AutoReasonConfig`` for a job, ``TeacherRoute`` for routing prompts to another teacher.

Example:
    >>> from hadron_hf.config import AutoReasonConfig, ModelConfig
    >>> AutoReasonConfig(model=ModelConfig(base_url="http://127.0.0.1:8000/v1", model="m"), judges=3).judges
    3
"""

from hadron_hf.config.job import AutoReasonConfig, TeacherRoute, describe_validation_error
from hadron_hf.config.models import Backend, JudgeConstraint, ModelConfig, check_shared_endpoints

__all__ = ["AutoReasonConfig", "Backend", "JudgeConstraint", "ModelConfig", "TeacherRoute", "check_shared_endpoints",
           "describe_validation_error"]
