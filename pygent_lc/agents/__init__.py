"""Agents of PyGent Factory over the provider chain.

``AgentFactory().create_agent(agent_type, name=None, custom_config=None)`` returns a
checked :class:`ReasoningAgent` (Tree of Thought) or :class:`ChatAgent` (an LCEL chain
with history); both answer with ``process`` and total their usage in ``.usage``.
"""

from pygent_lc.agents.chat import ChatAgent
from pygent_lc.agents.factory import Agent, AgentFactory
from pygent_lc.agents.progress import SolveProgress
from pygent_lc.agents.reasoning import ReasoningAgent
from pygent_lc.agents.spec import AGENT_TYPES, PROVIDER_CHOICES, TASK_NAMES
from pygent_lc.errors import AgentError, NoAnswerError

__all__ = [
    "AGENT_TYPES",
    "PROVIDER_CHOICES",
    "TASK_NAMES",
    "Agent",
    "AgentError",
    "AgentFactory",
    "ChatAgent",
    "NoAnswerError",
    "ReasoningAgent",
    "SolveProgress",
]
