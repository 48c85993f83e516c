"""Game-of-24 prompts, structured like the Tree of Thoughts paper's.

Same shapes as the prompts of Yao et al. (2023), princeton-nlp/tree-of-thought-llm
(MIT): a one-shot *propose* prompt listing possible next steps as
``a op b = c (left: ...)``; a few-shot *value* prompt ending each example with
sure / likely / impossible; a few-shot *last-step value* prompt judging a full
answer; and a chain-of-thought prompt that writes the ``Answer:`` line once
24 is left. The worked examples here are our own.

Every prompt starts with its fixed part (instructions and examples) and ends
with the state asked about, so the start is byte-identical on every call and
a provider can cache it (see :func:`pygent_lc.tot.tasks.prompt.split_template`).
"""

from __future__ import annotations

COT_PROMPT = """\
Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Each step, you are only \
allowed to choose two of the remaining numbers to obtain a new number.
Input: 3 5 6 9
Steps:
5 + 3 = 8 (left: 6 8 9)
9 - 6 = 3 (left: 3 8)
8 * 3 = 24 (left: 24)
Answer: (5 + 3) * (9 - 6) = 24
Input: 1 5 6 12
Steps:
6 - 5 = 1 (left: 1 1 12)
1 + 1 = 2 (left: 2 12)
12 * 2 = 24 (left: 24)
Answer: 12 * ((6 - 5) + 1) = 24
Input: 1 2 3 4
Steps:
1 + 2 = 3 (left: 3 3 4)
3 + 3 = 6 (left: 4 6)
6 * 4 = 24 (left: 24)
Answer: ((1 + 2) + 3) * 4 = 24
Input: {input}
"""

PROPOSE_PROMPT = """\
Input: 1 5 6 12
Possible next steps:
1 + 5 = 6 (left: 6 6 12)
12 / 6 = 2 (left: 1 2 5)
5 * 6 = 30 (left: 1 12 30)
12 - 5 = 7 (left: 1 6 7)
6 - 1 = 5 (left: 5 5 12)
12 + 1 = 13 (left: 5 6 13)
5 - 1 = 4 (left: 4 6 12)
12 * 1 = 12 (left: 5 6 12)
Input: {input}
Possible next steps:
"""

VALUE_PROMPT = """\
Evaluate if given numbers can reach 24 (sure/likely/impossible)
12 12
12 + 12 = 24
sure
2 9
2 + 9 = 11
9 - 2 = 7
2 * 9 = 18
9 / 2 = 4.5
impossible
2 6 6
2 + 6 + 6 = 14
(6 - 2) * 6 = 4 * 6 = 24
sure
1 4 6
1 * 4 * 6 = 4 * 6 = 24
sure
4 7 9
4 + 7 + 9 = 20
9 * 4 - 7 = 36 - 7 = 29
(9 - 7) * 4 = 2 * 4 = 8
I cannot obtain 24 now, but numbers are within a reasonable range
likely
10 11 13
10 + 11 + 13 = 34
(13 - 11) * 10 = 20
10 11 13 are all too big
impossible
1 1 3
1 + 1 + 3 = 5
(1 + 1) * 3 = 6
1 1 3 are all too small
impossible
{input}
"""

# The value prompt's examples, then several states at once: one answer line each.
VALUE_BATCH_PROMPT = (
    VALUE_PROMPT[: VALUE_PROMPT.index("{input}")]
    + """\
Evaluate each numbered line of numbers below the same way. Answer one line per input, in \
order, as "N. <numbers>: <a short calculation> <sure/likely/impossible>".
Inputs:
{inputs}
Answers:
"""
)

VALUE_LAST_STEP_PROMPT = """\
Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Given an input and an \
answer, give a judgement (sure/impossible) if the answer is correct, i.e. it uses each input \
exactly once and no other numbers, and reach 24.
Input: 3 5 6 9
Answer: (5 + 3) * (9 - 6) = 24
Judge:
sure
Input: 1 5 6 12
Answer: 12 * (6 - 5 + 1) = 24
Judge:
sure
Input: 3 5 6 9
Answer: (5 + 3) * (9 - 6) + 1 = 25
Judge:
impossible
Input: 1 5 6 12
Answer: 6 * (5 - 1) = 24
Judge:
impossible
Input: {input}
Answer: {answer}
Judge:"""

VOTE_PROMPT = """\
Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Each choice below is a \
partial solution. Analyse which one is most likely to reach 24, then end with \
"The best choice is N".
Input: {input}
{choices}
"""
