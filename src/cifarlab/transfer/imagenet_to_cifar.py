"""The ImageNet-1k classes grouped into the ten CIFAR-10 classes, for zero-shot evaluation (zeroshot.py).

Indices are those of the standard ImageNet-1k label order (timm.data.ImageNetInfo; the test checks every
index against its class name there). CIFAR-10's own class definitions (Krizhevsky 2009) decide the edges:
"automobile includes sedans, SUVs, things of that sort; truck includes only big trucks; neither includes
pickup trucks", and "cat" is the house cat; the file names of CIFAR-10's training images (the search terms
of their source, Tiny Images) show what each folder holds: "automobile" has coupes, station wagons, taxis,
police cruisers and 34 ambulances; "truck" has dump trucks, rigs, fire trucks, garbage trucks, moving vans,
tow trucks; "ship" everything from rowboats to tankers. The choices:

- airplane: airliner, warplane, and "wing" (ImageNet's photos of an aircraft wing). Not airship, not space
  shuttle (CIFAR has neither).
- automobile: beach wagon, cab, convertible, jeep, limousine, minivan, Model T, racer, sports car, and
  ambulance (in CIFAR's automobile folder). Not pickup (CIFAR excludes it), not police van (a van; CIFAR's
  police cars are cruisers), not car parts (grille, car wheel).
- bird: every ImageNet bird: 7-24 (cock .. great grey owl), 80-100 (black grouse .. black swan) and
  127-146 (white stork .. albatross).
- cat: the five domestic cats, 281-285 (tabby, tiger cat, Persian, Siamese, Egyptian). The big cats
  (cougar .. cheetah, 286-293) are left out: CIFAR's cats are house cats, and a lion is not one.
- deer: ImageNet-1k has NO deer class. The three antelopes (hartebeest, impala, gazelle), the nearest
  ImageNet has to a deer in shape and setting, stand in for it; say so wherever a deer figure is quoted.
- dog: the 118 dog breeds, 151-268 (Chihuahua .. Mexican hairless); not wolves, foxes or wild dogs.
- frog: bullfrog, tree frog, tailed frog.
- horse: sorrel (ImageNet's only horse) and horse cart. Not zebra (no zebras in CIFAR's horses).
- ship: watercraft from canoes to carriers: aircraft carrier, canoe, catamaran, container ship, fireboat,
  gondola, lifeboat, liner, pirate ship, schooner, speedboat, submarine, trimaran, wreck, yawl.
- truck: big trucks: fire engine, garbage truck, moving van, tow truck, trailer truck. Not pickup.

The other 777 classes (UNMAPPED_IMAGENET_CLASSES) belong to no CIFAR class: their probability is ignored
(see zeroshot.py).
"""
from __future__ import annotations

CIFAR10_FROM_IMAGENET: dict[str, tuple[int, ...]] = {
    "airplane": (404, 895, 908),
    "automobile": (407, 436, 468, 511, 609, 627, 656, 661, 751, 817),
    "bird": tuple(range(7, 25)) + tuple(range(80, 101)) + tuple(range(127, 147)),
    "cat": (281, 282, 283, 284, 285),
    "deer": (351, 352, 353),  # antelopes: ImageNet-1k has no deer
    "dog": tuple(range(151, 269)),
    "frog": (30, 31, 32),
    "horse": (339, 603),
    "ship": (403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 913, 914),
    "truck": (555, 569, 675, 864, 867),
}

# How many of the 1000 ImageNet classes no CIFAR class takes (the texts that quote it are checked against it).
UNMAPPED_IMAGENET_CLASSES = 1000 - sum(len(members) for members in CIFAR10_FROM_IMAGENET.values())

# The first name of each class in ImageNetInfo's descriptions; the test checks the indices against them.
IMAGENET_NAMES: dict[int, str] = {
    404: "airliner", 895: "warplane", 908: "wing", 407: "ambulance", 436: "beach wagon", 468: "cab", 511: "convertible",
    609: "jeep", 627: "limousine", 656: "minivan", 661: "Model T", 751: "racer", 817: "sports car",
    7: "cock", 24: "great grey owl", 80: "black grouse", 100: "black swan", 127: "white stork",
    146: "albatross", 281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat",
    285: "Egyptian cat", 351: "hartebeest", 352: "impala", 353: "gazelle", 151: "Chihuahua",
    268: "Mexican hairless", 30: "bullfrog", 31: "tree frog", 32: "tailed frog", 339: "sorrel",
    603: "horse cart", 403: "aircraft carrier", 472: "canoe", 484: "catamaran", 510: "container ship",
    554: "fireboat", 576: "gondola", 625: "lifeboat", 628: "liner", 724: "pirate", 780: "schooner",
    814: "speedboat", 833: "submarine", 871: "trimaran", 913: "wreck", 914: "yawl", 555: "fire engine",
    569: "garbage truck", 675: "moving van", 864: "tow truck", 867: "trailer truck",
}
NO_EXACT_COUNTERPART = ("deer",)
