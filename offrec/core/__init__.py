"""The ground floor: what every other package of offrec builds on.

- :mod:`offrec.core.policy`: the ``Policy`` protocol, heads, sampling with propensities;
- :mod:`offrec.core.errors`: the exceptions raised for bad input;
- :mod:`offrec.core.validation`: argument checks and seeding;
- :mod:`offrec.core.atomic`: atomic publishing of files and folders.

Nothing here imports another offrec package.
"""
