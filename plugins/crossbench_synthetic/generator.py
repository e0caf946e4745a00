"""A deterministic generator of cross-domain interaction data with planted, transferable tastes.

Each user ``u`` has a latent taste ``z_u`` over ``n_topics`` topics. In domain ``d`` the
user's taste is ``theta_ud = transfer * z_u + sqrt(1 - transfer^2) * e_ud`` with fresh noise
``e_ud``, so ``transfer`` sets how well one domain predicts another (0: not at all; 1: the
same taste everywhere). Each item has a main and a second topic and a Zipf popularity
weight. A user's items in a domain are drawn without replacement with probability
proportional to ``popularity * exp(taste_strength * theta_ud . topics_i)``. Titles and
descriptions use words of the item's topics, so a text encoder sees real signal, and the
topics (and their words) are the same in every domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crossbench.data.model import CrossDomainData
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import Dataset

TOPICS: tuple[tuple[str, ...], ...] = (
    ("space", "planet", "rocket", "galaxy", "astronaut", "orbit", "star", "alien", "comet", "moon"),
    ("cooking", "kitchen", "recipe", "chef", "bread", "spice", "dinner", "flavour", "baking", "feast"),
    ("war", "soldier", "battle", "army", "general", "siege", "trench", "victory", "regiment", "frontline"),
    ("romance", "love", "wedding", "heart", "kiss", "passion", "sweetheart", "affair", "bride", "courtship"),
    ("crime", "detective", "murder", "police", "clue", "suspect", "heist", "gangster", "alibi", "verdict"),
    ("horror", "ghost", "haunted", "monster", "vampire", "nightmare", "curse", "zombie", "scream", "crypt"),
    ("sport", "football", "coach", "team", "championship", "stadium", "goal", "athlete", "league", "trophy"),
    ("ocean", "sailor", "ship", "island", "pirate", "voyage", "harbour", "storm", "whale", "anchor"),
    ("music", "guitar", "band", "singer", "concert", "melody", "drummer", "rhythm", "song", "stage"),
    ("science", "laboratory", "experiment", "physics", "chemistry", "theory", "scientist", "discovery", "atom", "genome"),
    ("history", "empire", "king", "queen", "medieval", "dynasty", "castle", "throne", "ancient", "revolution"),
    ("comedy", "joke", "laugh", "prank", "satire", "clown", "sitcom", "parody", "humour", "farce"),
    ("nature", "forest", "wildlife", "mountain", "river", "bird", "garden", "flower", "valley", "wilderness"),
    ("technology", "computer", "robot", "software", "network", "hacker", "startup", "algorithm", "machine", "digital"),
    ("travel", "journey", "road", "passport", "tourist", "train", "adventure", "map", "border", "backpack"),
    ("family", "mother", "father", "childhood", "sibling", "grandmother", "home", "parent", "reunion", "daughter"),
    ("fantasy", "dragon", "wizard", "magic", "sword", "kingdom", "elf", "quest", "spell", "prophecy"),
    ("politics", "election", "senator", "president", "campaign", "scandal", "parliament", "vote", "diplomat", "policy"),
    ("medicine", "doctor", "hospital", "nurse", "surgery", "patient", "disease", "cure", "clinic", "vaccine"),
    ("art", "painter", "museum", "canvas", "sculpture", "gallery", "portrait", "artist", "colour", "studio"),
)
FILLER = (
    "the", "a", "story", "of", "with", "and", "new", "old", "great", "life", "world", "tale", "about",
    "from", "young", "last", "first", "secret", "time", "day", "night", "true", "long", "lost",
)
DOMAIN_NOUNS = {
    "books": "novel", "movies": "film", "music": "album", "games": "game", "podcasts": "podcast", "comics": "comic",
}
DEFAULT_DOMAINS = ("books", "movies", "music", "games")


@dataclass(frozen=True)
class SyntheticDataset(Dataset):
    """Synthetic cross-domain data; see the module docstring for the generative model."""

    n_users: int = 6000
    n_items: int = 1500
    n_domains: int = 2
    n_topics: int = 16
    transfer: float = 0.8
    overlap: float = 0.6
    mean_interactions: float = 20.0
    zipf_exponent: float = 0.8
    taste_strength: float = 4.0
    seed: int = 0

    def check(self) -> None:
        problems = []
        if self.n_users < 10:
            problems.append(f"n_users must be at least 10, got {self.n_users}")
        if self.n_items < 10:
            problems.append(f"n_items must be at least 10, got {self.n_items}")
        if not 2 <= self.n_domains <= len(DEFAULT_DOMAINS):
            problems.append(f"n_domains must be in [2, {len(DEFAULT_DOMAINS)}], got {self.n_domains}")
        if not 2 <= self.n_topics <= len(TOPICS):
            problems.append(f"n_topics must be in [2, {len(TOPICS)}], got {self.n_topics}")
        if not 0.0 <= self.transfer <= 1.0:
            problems.append(f"transfer must be in [0, 1], got {self.transfer}")
        if not 0.0 < self.overlap <= 1.0:
            problems.append(f"overlap must be in (0, 1], got {self.overlap}")
        if self.mean_interactions < 3:
            problems.append(f"mean_interactions must be at least 3, got {self.mean_interactions}")
        if problems:
            raise CrossbenchError("dataset 'synthetic': " + "; ".join(problems))

    def load(self) -> CrossDomainData:
        self.check()
        names = DEFAULT_DOMAINS[: self.n_domains]
        users = np.arange(self.n_users)
        everywhere, only, z = self._users()
        frames, item_frames = [], []
        for d, name in enumerate(names):
            drng = np.random.default_rng([self.seed, d + 1])
            theta, main, second, topics, log_pop = self._domain(drng, z)
            active = users[everywhere | (only == d)]
            counts = np.clip(
                np.round(drng.lognormal(math.log(self.mean_interactions) - 0.18, 0.6, len(active))), 3, self.n_items // 2
            ).astype(np.int64)
            u_parts, i_parts = [], []
            chunk = max(1, 4_000_000 // self.n_items)
            for s in range(0, len(active), chunk):
                au = active[s : s + chunk]
                cnt = counts[s : s + chunk]
                logits = self._logits(theta[au], topics, log_pop)
                gumbel = -np.log(-np.log(drng.random(logits.shape)))
                top = np.argsort(-(logits + gumbel), axis=1)[:, : int(cnt.max())]
                keep = np.arange(top.shape[1])[None, :] < cnt[:, None]
                u_parts.append(np.repeat(au, cnt))
                i_parts.append(top[keep])
            u_all = np.concatenate(u_parts)
            i_all = np.concatenate(i_parts)
            ts = 1_600_000_000 + drng.integers(0, 365 * 86400, len(u_all))
            frames.append(pd.DataFrame({"domain": name, "user": u_all, "item": i_all, "timestamp": ts}))
            titles, texts = self._texts(drng, name, main, second)
            item_frames.append(pd.DataFrame({"domain": name, "item": np.arange(self.n_items), "title": titles, "text": texts}))
        interactions = pd.concat(frames, ignore_index=True)
        items = pd.concat(item_frames, ignore_index=True)
        interactions["user"] = interactions["user"].map(lambda u: f"u{u:06d}")
        interactions["item"] = interactions["item"].map(lambda i: f"i{i:06d}")
        items["item"] = items["item"].map(lambda i: f"i{i:06d}")
        params = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return CrossDomainData.from_frames(
            "synthetic", interactions, items, domain_order=names,
            meta={"default_target": names[1], "generator": params},
        )

    def _users(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Who is active where (an ``overlap`` share everywhere, the rest in one domain each) and the tastes ``z``."""
        rng = np.random.default_rng(self.seed)
        everywhere = rng.random(self.n_users) < self.overlap
        only = rng.integers(0, self.n_domains, self.n_users)
        z = rng.standard_normal((self.n_users, self.n_topics))
        return everywhere, only, z

    def _domain(self, drng: np.random.Generator, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """The first draws of a domain's generator: tastes, item topics and Zipf log-popularity."""
        noise_scale = math.sqrt(max(0.0, 1.0 - self.transfer**2))
        theta = self.transfer * z + noise_scale * drng.standard_normal((self.n_users, self.n_topics))
        main = drng.integers(0, self.n_topics, self.n_items)
        second = (main + drng.integers(1, self.n_topics, self.n_items)) % self.n_topics
        topics = np.zeros((self.n_items, self.n_topics))
        topics[np.arange(self.n_items), main] = 1.0
        topics[np.arange(self.n_items), second] += 0.5
        rank = drng.permutation(self.n_items)
        log_pop = -self.zipf_exponent * np.log1p(rank)
        return theta, main, second, topics, log_pop

    def _logits(self, theta: np.ndarray, topics: np.ndarray, log_pop: np.ndarray) -> np.ndarray:
        return np.asarray(self.taste_strength * theta @ topics.T / math.sqrt(1.25) + log_pop)

    def planted(self, domain: str) -> PlantedChoice:
        """The choice model that generated ``domain``'s interactions (without generating them)."""
        names = DEFAULT_DOMAINS[: self.n_domains]
        if domain not in names:
            raise CrossbenchError(f"dataset 'synthetic' has no domain {domain!r} (domains: {', '.join(names)})")
        self.check()
        _, _, z = self._users()
        theta, _, _, topics, log_pop = self._domain(np.random.default_rng([self.seed, names.index(domain) + 1]), z)
        return PlantedChoice(self, theta, topics, log_pop)

    def _texts(self, rng: np.random.Generator, domain: str, main: np.ndarray, second: np.ndarray) -> tuple[list[str], list[str]]:
        noun = DOMAIN_NOUNS.get(domain, "item")
        titles, texts = [], []
        for m, s in zip(main, second):
            w_main, w_second = TOPICS[m], TOPICS[s]
            title = " ".join(
                [str(rng.choice(FILLER[:4])).capitalize(), str(rng.choice(w_main)).capitalize(), str(rng.choice(w_main)).capitalize()]
            )
            words = []
            for _ in range(int(rng.integers(10, 16))):
                r = rng.random()
                pool = w_main if r < 0.55 else w_second if r < 0.75 else FILLER
                words.append(str(rng.choice(pool)))
            titles.append(title)
            texts.append(f"A {noun} about {' '.join(words)}.")
        return titles, texts


@dataclass(frozen=True)
class PlantedChoice:
    """One domain's planted preferences: a user draws items with probability ``softmax(logits)``.

    The generator makes about ``mean_interactions`` such draws per user (without replacement);
    :meth:`acceptance` is the chance that an item is among ``draws`` independent draws,
    ``1 - (1 - q_ui) ** draws`` with ``q_ui`` the item's choice probability.
    """

    dataset: SyntheticDataset
    theta: np.ndarray
    topics: np.ndarray
    log_pop: np.ndarray

    def choice(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), n_items]`` choice probabilities (generator user and item numbers)."""
        logits = self.dataset._logits(self.theta[users], self.topics, self.log_pop)
        logits -= logits.max(axis=1, keepdims=True)
        q = np.exp(logits)
        return np.asarray(q / q.sum(axis=1, keepdims=True))

    def acceptance(self, users: np.ndarray, items: np.ndarray, *, draws: float) -> np.ndarray:
        """``[U, K]`` chance that each user takes each of ``items`` ``[U, K]`` (``-1``: 0)."""
        q = np.take_along_axis(self.choice(users), np.maximum(items, 0), axis=1)
        return np.where(items >= 0, 1.0 - np.power(1.0 - q, draws), 0.0)

