"""PyGent Factory's agents over the provider chain: ``AgentFactory().create_agent`` gives a
:class:`ReasoningAgent` (Tree of Thought) or a :class:`ChatAgent` (LCEL, with history)."""

from pygent_lc.agents.chat import ChatAgent
from pygent_lc.agents.factory import Agent, AgentFactory
from pygent_lc.agents.reasoning import ReasoningAgent, SolveProgress
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
